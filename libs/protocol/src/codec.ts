/**
 * Encoding and boundary validation of NATS messages. Decoders check shape cheaply (no reflection)
 * and throw {@link ProtocolError} with the reason; callers log the reason and drop the message.
 */
import { crc32 } from 'node:zlib';
import {
  AckMessage,
  CatchupDiverged,
  CatchupReply,
  CatchupRequest,
  ErrorReply,
  Heartbeat,
  LogBatch,
  PROTOCOL_VERSION,
  SNAPSHOT_FRAME_HEADER_BYTES,
  SnapshotFrame,
  SnapshotInfo,
  SnapshotStarted,
  SnapshotWait,
  WireEntry,
} from './messages';
import { FlotillaError, WireError } from './errors';

/** A message that failed validation at the boundary. */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encode(message: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(message));
}

/** Parses JSON and checks the envelope (`type` string, known `v`). */
export function decodeEnvelope(data: Uint8Array): { type: string; v: number } & Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(data));
  } catch (err) {
    throw new ProtocolError(`not JSON: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ProtocolError('not a JSON object');
  }
  const m = value as Record<string, unknown>;
  if (typeof m.type !== 'string') throw new ProtocolError('missing "type"');
  if (m.v !== PROTOCOL_VERSION) throw new ProtocolError(`unknown protocol version ${String(m.v)}`);
  return m as { type: string; v: number } & Record<string, unknown>;
}

/** CRC-32 of a payload's UTF-8 bytes, as carried in {@link WireEntry.crc}. */
export function payloadCrc(payload: string): number {
  return crc32(payload);
}

const DECIMAL = /^(0|[1-9][0-9]{0,18})$/;

/** Parses a decimal LSN string; throws ProtocolError when it is not one. */
export function parseLsn(value: unknown, what = 'lsn'): number {
  if (typeof value !== 'string' || !DECIMAL.test(value)) {
    throw new ProtocolError(`${what} must be a decimal string, got ${JSON.stringify(value)}`);
  }
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new ProtocolError(`${what} ${value} is beyond 2^53`);
  return n;
}

function isEpoch(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function checkEntry(e: unknown, i: number): WireEntry {
  if (typeof e !== 'object' || e === null) throw new ProtocolError(`entry ${i} is not an object`);
  const w = e as Record<string, unknown>;
  parseLsn(w.lsn, `entry ${i} lsn`);
  if (!isEpoch(w.epoch)) throw new ProtocolError(`entry ${i} has a bad epoch`);
  if (typeof w.ts !== 'number') throw new ProtocolError(`entry ${i} has a bad ts`);
  if (typeof w.crc !== 'number') throw new ProtocolError(`entry ${i} has a bad crc`);
  if (typeof w.payload !== 'string') throw new ProtocolError(`entry ${i} has no payload`);
  return w as unknown as WireEntry;
}

function checkEntries(v: unknown): WireEntry[] {
  if (!Array.isArray(v)) throw new ProtocolError('entries must be an array');
  v.forEach(checkEntry);
  return v as WireEntry[];
}

export function decodeLogBatch(data: Uint8Array): LogBatch {
  const m = decodeEnvelope(data);
  if (m.type !== 'entries') throw new ProtocolError(`expected entries, got ${m.type}`);
  if (!isEpoch(m.epoch)) throw new ProtocolError('bad epoch');
  if (typeof m.leader !== 'string') throw new ProtocolError('bad leader');
  checkEntries(m.entries);
  if ((m.lsn === undefined) !== (m.ts === undefined)) throw new ProtocolError('lsn and ts go together');
  if (m.lsn !== undefined) parseLsn(m.lsn, 'lsn');
  if (m.ts !== undefined && !(typeof m.ts === 'number' && Number.isFinite(m.ts))) throw new ProtocolError('bad ts');
  return m as unknown as LogBatch;
}

export function decodeAck(data: Uint8Array): AckMessage {
  const m = decodeEnvelope(data);
  if (m.type !== 'ack') throw new ProtocolError(`expected ack, got ${m.type}`);
  if (typeof m.node !== 'string') throw new ProtocolError('bad node');
  if (!isEpoch(m.epoch)) throw new ProtocolError('bad epoch');
  parseLsn(m.received, 'received');
  parseLsn(m.flushed, 'flushed');
  parseLsn(m.applied, 'applied');
  return m as unknown as AckMessage;
}

export function decodeHeartbeat(data: Uint8Array): Heartbeat {
  const m = decodeEnvelope(data);
  if (m.type !== 'hb') throw new ProtocolError(`expected hb, got ${m.type}`);
  if (typeof m.node !== 'string') throw new ProtocolError('bad node');
  if (typeof m.role !== 'string') throw new ProtocolError('bad role');
  if (!isEpoch(m.epoch)) throw new ProtocolError('bad epoch');
  parseLsn(m.lsn, 'lsn');
  parseLsn(m.appliedLsn, 'appliedLsn');
  return m as unknown as Heartbeat;
}

export function decodeCatchupRequest(data: Uint8Array): CatchupRequest {
  const m = decodeEnvelope(data);
  if (m.type !== 'catchup') throw new ProtocolError(`expected catchup, got ${m.type}`);
  if (typeof m.node !== 'string') throw new ProtocolError('bad node');
  if (!isEpoch(m.epoch)) throw new ProtocolError('bad epoch');
  parseLsn(m.after, 'after');
  if (typeof m.maxBytes !== 'number' || m.maxBytes <= 0) throw new ProtocolError('bad maxBytes');
  return m as unknown as CatchupRequest;
}

export function decodeCatchupReply(data: Uint8Array): CatchupReply | CatchupDiverged {
  const m = decodeEnvelope(data);
  throwIfError(m);
  if (m.type === 'catchup-diverged') {
    parseLsn(m.truncateAfter, 'truncateAfter');
    if (!Array.isArray(m.epochs)) throw new ProtocolError('bad epochs');
    return m as unknown as CatchupDiverged;
  }
  if (m.type !== 'catchup-reply') throw new ProtocolError(`expected catchup-reply, got ${m.type}`);
  parseLsn(m.leaderLsn, 'leaderLsn');
  checkEntries(m.entries);
  if (!Array.isArray(m.epochs)) throw new ProtocolError('bad epochs');
  return m as unknown as CatchupReply;
}

/**
 * A binary snapshot reply of `payloadBytes` with its header written; the caller fills the payload
 * at offset {@link SNAPSHOT_FRAME_HEADER_BYTES} (so a chunk is read from disk straight into it).
 */
export function allocSnapshotFrame(kind: SnapshotFrame, index: number, payloadBytes: number): Buffer {
  if (!Number.isInteger(index) || index < 0 || index > 0xffffffff) throw new RangeError(`snapshot frame index ${index}`);
  const frame = Buffer.allocUnsafe(SNAPSHOT_FRAME_HEADER_BYTES + payloadBytes);
  frame.write(kind, 0, 'latin1');
  frame.writeUInt32BE(index, 4);
  return frame;
}

/** A decoded reply of the snapshot channel. Payloads are views of the received bytes (no copy). */
export type SnapshotReply =
  | { type: 'frame'; frame: SnapshotFrame; index: number; payload: Uint8Array }
  | SnapshotStarted
  | SnapshotInfo
  | SnapshotWait;

const FRAMES: readonly string[] = Object.values(SnapshotFrame);

/** Decodes a snapshot reply; an error reply is thrown as a FlotillaError, anything else unknown as ProtocolError. */
export function decodeSnapshotReply(data: Uint8Array): SnapshotReply {
  if (data.length >= SNAPSHOT_FRAME_HEADER_BYTES && data[0] !== 0x7b) {
    const kind = Buffer.from(data.buffer, data.byteOffset, 4).toString('latin1');
    if (!FRAMES.includes(kind)) throw new ProtocolError(`unknown snapshot frame ${JSON.stringify(kind)}`);
    const index = Buffer.from(data.buffer, data.byteOffset, SNAPSHOT_FRAME_HEADER_BYTES).readUInt32BE(4);
    return { type: 'frame', frame: kind as SnapshotFrame, index, payload: data.subarray(SNAPSHOT_FRAME_HEADER_BYTES) };
  }
  const m = decodeEnvelope(data);
  throwIfError(m);
  const count = (v: unknown, what: string) => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new ProtocolError(`bad ${what}`);
  };
  switch (m.type) {
    case 'snapshot-wait':
      return m as unknown as SnapshotWait;
    case 'snapshot-started':
    case 'snapshot-info':
      if (typeof m.id !== 'string') throw new ProtocolError('bad id');
      parseLsn(m.lsn);
      if (!isEpoch(m.epoch)) throw new ProtocolError('bad epoch');
      count(m.chunkBytes, 'chunkBytes');
      if ((m.chunkBytes as number) === 0) throw new ProtocolError('bad chunkBytes');
      if (m.type === 'snapshot-info') {
        count(m.bytes, 'bytes');
        count(m.chunks, 'chunks');
        if (m.chunks !== Math.ceil((m.bytes as number) / (m.chunkBytes as number))) throw new ProtocolError(`${String(m.bytes)} bytes are not ${String(m.chunks)} chunks`);
      }
      return m as unknown as SnapshotStarted | SnapshotInfo;
    default:
      throw new ProtocolError(`unexpected snapshot reply ${m.type}`);
  }
}

export function errorReply(error: WireError): ErrorReply {
  return { type: 'error', v: PROTOCOL_VERSION, error };
}

/** If a decoded reply is an {@link ErrorReply}, throws it as a FlotillaError. */
export function throwIfError(m: { type: string } & Record<string, unknown>): void {
  if (m.type === 'error') {
    const e = m.error as WireError | undefined;
    if (!e || typeof e.code !== 'string') throw new ProtocolError('error reply without error');
    throw FlotillaError.fromWire(e);
  }
}
