/**
 * A batch frame packs several requests (gateway → leader) or their replies (leader → gateway) into
 * one NATS message: under load the gateway sends the writes of one event-loop turn as one message
 * and the leader answers the writes that finish together with one message, instead of four NATS
 * deliveries per write (request in and out of nats-server, reply in and out).
 *
 * Layout (big-endian): magic 0xFB, version 1, item count (u32), then per item its id (u32), its
 * length (u32) and its bytes. Each item is a whole message of its own (a JSON request, or the
 * JSON reply to the item with the same id). 0xFB never starts a JSON message, so a receiver tells a
 * frame from a plain message by its first byte.
 */
import { ProtocolError } from './codec';

export const BATCH_FRAME_MAGIC = 0xfb;
export const BATCH_FRAME_VERSION = 1;
const HEADER_BYTES = 6;
const ITEM_HEADER_BYTES = 8;
/** Most items one frame may carry (the leader's group commit takes 512 requests at most). */
export const BATCH_FRAME_ITEMS_MAX = 4096;
/**
 * The sender's bound on one frame's size: well under NATS's default 1 MiB payload limit. An item
 * larger than this on its own goes as a plain message.
 */
export const BATCH_FRAME_BYTES_MAX = 256 * 1024;

export interface BatchItem {
  /** The sender's id of the request; a reply carries the id of the request it answers. */
  id: number;
  data: Uint8Array;
}

/** True when `data` is a batch frame (a plain message is JSON and starts otherwise). */
export function isBatchFrame(data: Uint8Array): boolean {
  return data.length > 0 && data[0] === BATCH_FRAME_MAGIC;
}

/** The bytes an item adds to a frame. */
export function batchItemBytes(data: Uint8Array): number {
  return ITEM_HEADER_BYTES + data.length;
}

export function encodeBatchFrame(items: readonly BatchItem[]): Uint8Array {
  let size = HEADER_BYTES;
  for (const it of items) size += ITEM_HEADER_BYTES + it.data.length;
  const out = Buffer.allocUnsafe(size);
  out[0] = BATCH_FRAME_MAGIC;
  out[1] = BATCH_FRAME_VERSION;
  out.writeUInt32BE(items.length, 2);
  let at = HEADER_BYTES;
  for (const it of items) {
    out.writeUInt32BE(it.id >>> 0, at);
    out.writeUInt32BE(it.data.length, at + 4);
    out.set(it.data, at + ITEM_HEADER_BYTES);
    at += ITEM_HEADER_BYTES + it.data.length;
  }
  return out;
}

/**
 * Splits a frame into its items (views into `data`, not copies). Throws {@link ProtocolError} when
 * the frame is not exactly a well-formed frame: wrong magic or version, no items, too many, a
 * length that runs past the end, or bytes left over.
 */
export function decodeBatchFrame(data: Uint8Array): BatchItem[] {
  if (data.length < HEADER_BYTES || data[0] !== BATCH_FRAME_MAGIC) throw new ProtocolError('not a batch frame');
  if (data[1] !== BATCH_FRAME_VERSION) throw new ProtocolError(`unknown batch frame version ${data[1]}`);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const count = view.getUint32(2);
  if (count === 0) throw new ProtocolError('batch frame without items');
  if (count > BATCH_FRAME_ITEMS_MAX) throw new ProtocolError(`batch frame of ${count} items (at most ${BATCH_FRAME_ITEMS_MAX})`);
  const items: BatchItem[] = new Array(count);
  let at = HEADER_BYTES;
  for (let i = 0; i < count; i++) {
    if (at + ITEM_HEADER_BYTES > data.length) throw new ProtocolError(`batch frame truncated at item ${i} of ${count}`);
    const id = view.getUint32(at);
    const len = view.getUint32(at + 4);
    at += ITEM_HEADER_BYTES;
    if (len > data.length - at) throw new ProtocolError(`batch frame item ${i} claims ${len} bytes, ${data.length - at} left`);
    items[i] = { id, data: data.subarray(at, at + len) };
    at += len;
  }
  if (at !== data.length) throw new ProtocolError(`batch frame has ${data.length - at} bytes after its ${count} items`);
  return items;
}

/**
 * Packs items into as few frames as fit `maxBytes` each, in order. An item too large to share a
 * frame gets one of its own (the sender decides whether such an item should go plain instead).
 */
export function packBatchFrames(items: readonly BatchItem[], maxBytes = BATCH_FRAME_BYTES_MAX): BatchItem[][] {
  const frames: BatchItem[][] = [];
  let current: BatchItem[] = [];
  let bytes = HEADER_BYTES;
  for (const it of items) {
    const size = ITEM_HEADER_BYTES + it.data.length;
    if (current.length > 0 && (bytes + size > maxBytes || current.length >= BATCH_FRAME_ITEMS_MAX)) {
      frames.push(current);
      current = [];
      bytes = HEADER_BYTES;
    }
    current.push(it);
    bytes += size;
  }
  if (current.length > 0) frames.push(current);
  return frames;
}

/**
 * Collects the replies to the items of one received frame and sends those that are ready together:
 * every reply added during one synchronous run (a group commit's replies, the writes one ack
 * releases) goes out in one frame, at the end of that run (a microtask), so no reply waits longer
 * than it would alone.
 */
export class BatchReplies {
  private items: BatchItem[] = [];
  private scheduled = false;

  constructor(
    private readonly send: (frame: Uint8Array) => void,
    private readonly onSendError: (err: Error, replies: number) => void = () => undefined,
  ) {}

  add(id: number, data: Uint8Array): void {
    this.items.push({ id, data });
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => this.flush());
  }

  private flush(): void {
    this.scheduled = false;
    const items = this.items;
    this.items = [];
    // One frame that cannot be sent must not cost the replies in the frames after it.
    for (const frame of packBatchFrames(items)) {
      try {
        this.send(encodeBatchFrame(frame));
      } catch (err) {
        this.onSendError(err as Error, frame.length);
      }
    }
  }
}
