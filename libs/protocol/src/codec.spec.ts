import { allocSnapshotFrame, decodeLogBatch, decodeSnapshotReply, encode, errorReply, ProtocolError } from './codec';
import { ErrorCode, FlotillaError } from './errors';
import { PROTOCOL_VERSION, SNAPSHOT_FRAME_HEADER_BYTES, SnapshotFrame } from './messages';

describe('snapshot replies', () => {
  test('a chunk frame carries its index and a view of the payload', () => {
    const frame = allocSnapshotFrame(SnapshotFrame.CHUNK, 70_000, 5);
    frame.set([1, 2, 3, 4, 5], SNAPSHOT_FRAME_HEADER_BYTES);
    const r = decodeSnapshotReply(frame);
    expect(r).toEqual({ type: 'frame', frame: SnapshotFrame.CHUNK, index: 70_000, payload: expect.anything() });
    if (r.type !== 'frame') throw new Error('not a frame');
    expect([...r.payload]).toEqual([1, 2, 3, 4, 5]);
    expect(r.payload.buffer).toBe(frame.buffer);
  });

  test('a hashes frame is told apart from a chunk', () => {
    const r = decodeSnapshotReply(allocSnapshotFrame(SnapshotFrame.HASHES, 3, 64));
    expect(r).toMatchObject({ type: 'frame', frame: SnapshotFrame.HASHES, index: 3 });
  });

  test('a frame inside a larger buffer (as a NATS client hands it over) decodes from its own offset', () => {
    const frame = allocSnapshotFrame(SnapshotFrame.CHUNK, 9, 2);
    const outer = new Uint8Array(frame.length + 7);
    outer.set(frame, 7);
    expect(decodeSnapshotReply(outer.subarray(7))).toMatchObject({ frame: SnapshotFrame.CHUNK, index: 9 });
  });

  test('JSON replies: started, info, wait; an error reply is thrown as its FlotillaError', () => {
    const started = { type: 'snapshot-started', v: PROTOCOL_VERSION, id: 'a', lsn: '12', epoch: 2, chunkBytes: 4096 };
    expect(decodeSnapshotReply(encode(started))).toEqual(started);
    const info = { type: 'snapshot-info', v: PROTOCOL_VERSION, id: 'a', lsn: '12', epoch: 2, chunkBytes: 4096, bytes: 8193, chunks: 3 };
    expect(decodeSnapshotReply(encode(info))).toEqual(info);
    expect(decodeSnapshotReply(encode({ type: 'snapshot-wait', v: PROTOCOL_VERSION }))).toEqual({ type: 'snapshot-wait', v: PROTOCOL_VERSION });
    expect(() => decodeSnapshotReply(encode(errorReply({ code: ErrorCode.NOT_FOUND, message: 'gone' })))).toThrow(FlotillaError);
  });

  test('malformed replies are refused', () => {
    const info = { type: 'snapshot-info', v: PROTOCOL_VERSION, id: 'a', lsn: '12', epoch: 2, chunkBytes: 4096, bytes: 8193, chunks: 2 };
    expect(() => decodeSnapshotReply(encode(info))).toThrow(/not 2 chunks/);
    expect(() => decodeSnapshotReply(encode({ ...info, chunks: 3, lsn: 12 }))).toThrow(ProtocolError);
    expect(() => decodeSnapshotReply(encode({ type: 'snapshot-started', v: PROTOCOL_VERSION, id: 'a', lsn: '1', epoch: 1, chunkBytes: 0 }))).toThrow(/chunkBytes/);
    expect(() => decodeSnapshotReply(encode({ type: 'ok', v: PROTOCOL_VERSION }))).toThrow(/unexpected snapshot reply ok/);
    expect(() => decodeSnapshotReply(Buffer.from('XXXX\x00\x00\x00\x01data', 'latin1'))).toThrow(/unknown snapshot frame/);
    expect(() => allocSnapshotFrame(SnapshotFrame.CHUNK, -1, 0)).toThrow(RangeError);
  });
});

describe('change-stream batches', () => {
  const entry = { lsn: '3', epoch: 1, ts: 1000, crc: 0, payload: '{}' };
  const batch = (extra: Record<string, unknown>) => encode({ type: 'entries', v: PROTOCOL_VERSION, epoch: 1, leader: 'replica-0', entries: [entry], ...extra });

  test('carry the leader\'s LSN and clock at publication, or neither (an older leader)', () => {
    expect(decodeLogBatch(batch({ lsn: '5', ts: 1234 }))).toMatchObject({ lsn: '5', ts: 1234 });
    expect(decodeLogBatch(batch({}))).not.toHaveProperty('ts');
  });

  test.each([
    ['lsn without ts', { lsn: '5' }],
    ['ts without lsn', { ts: 5 }],
    ['a bad lsn', { lsn: '-1', ts: 5 }],
    ['a ts that is not a number', { lsn: '5', ts: '5' }],
    ['a ts that is not finite', { lsn: '5', ts: null }],
  ])('refuse %s', (_what, extra) => {
    expect(() => decodeLogBatch(batch(extra))).toThrow(ProtocolError);
  });
});
