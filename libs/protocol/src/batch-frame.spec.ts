import {
  BATCH_FRAME_ITEMS_MAX,
  BatchItem,
  BatchReplies,
  decodeBatchFrame,
  encodeBatchFrame,
  isBatchFrame,
  packBatchFrames,
} from './batch-frame';
import { encode, ProtocolError } from './codec';

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const plain = (items: BatchItem[]) => items.map((it) => ({ id: it.id, text: dec(it.data) }));

describe('batch frames', () => {
  test('round trip: ids, bytes and order kept, empty items included', () => {
    const items = [
      { id: 1, data: enc('{"type":"write"}') },
      { id: 0xffff_ffff, data: new Uint8Array(0) },
      { id: 42, data: enc('é ✓') },
    ];
    const frame = encodeBatchFrame(items);
    expect(isBatchFrame(frame)).toBe(true);
    expect(plain(decodeBatchFrame(frame))).toEqual(plain(items));
  });

  test('a JSON message is never taken for a frame', () => {
    expect(isBatchFrame(encode({ type: 'write' }))).toBe(false);
    expect(isBatchFrame(enc('[1]'))).toBe(false);
    expect(isBatchFrame(new Uint8Array(0))).toBe(false);
  });

  const frame = encodeBatchFrame([
    { id: 7, data: enc('abc') },
    { id: 8, data: enc('de') },
  ]);
  const bad: [string, Uint8Array, RegExp][] = [
    ['not a frame', enc('{"type":"write"}'), /not a batch frame/],
    ['only a header', frame.subarray(0, 3), /not a batch frame/],
    ['an unknown version', Uint8Array.from([0xfb, 9, 0, 0, 0, 1]), /version 9/],
    ['no items', Uint8Array.from([0xfb, 1, 0, 0, 0, 0]), /without items/],
    ['too many items', Uint8Array.from([0xfb, 1, 0xff, 0xff, 0xff, 0xff]), /at most 4096/],
    ['truncated inside an item', frame.subarray(0, frame.length - 1), /claims 2 bytes, 1 left/],
    ['truncated between items', frame.subarray(0, 6 + 8 + 3), /truncated at item 1 of 2/],
    ['bytes after the last item', Uint8Array.from([...frame, 0]), /1 bytes after its 2 items/],
  ];
  test.each(bad)('%s is refused with a reason', (_name, data, reason) => {
    expect(() => decodeBatchFrame(data)).toThrow(ProtocolError);
    expect(() => decodeBatchFrame(data)).toThrow(reason);
  });

  test('a frame decoded from a view into a larger buffer reads only its own bytes', () => {
    const big = new Uint8Array(frame.length + 10);
    big.set(frame, 5);
    expect(plain(decodeBatchFrame(big.subarray(5, 5 + frame.length)))).toEqual([
      { id: 7, text: 'abc' },
      { id: 8, text: 'de' },
    ]);
  });

  test('packing keeps order, respects the size bound, and gives an oversized item a frame alone', () => {
    const items = [10, 10, 10, 100, 10].map((n, i) => ({ id: i, data: new Uint8Array(n) }));
    const frames = packBatchFrames(items, 6 + 2 * 18);
    expect(frames.map((f) => f.map((it) => it.id))).toEqual([[0, 1], [2], [3], [4]]);
    for (const f of frames) expect(decodeBatchFrame(encodeBatchFrame(f))).toHaveLength(f.length);
    const many = Array.from({ length: BATCH_FRAME_ITEMS_MAX + 1 }, (_, id) => ({ id, data: new Uint8Array(0) }));
    expect(packBatchFrames(many).map((f) => f.length)).toEqual([BATCH_FRAME_ITEMS_MAX, 1]);
  });
});

describe('BatchReplies', () => {
  test('replies added in one synchronous run go out as one frame, later ones in the next', async () => {
    const sent: Uint8Array[] = [];
    const replies = new BatchReplies((f) => sent.push(f));
    replies.add(3, enc('c'));
    replies.add(1, enc('a'));
    expect(sent).toHaveLength(0); // not before the run ends
    await Promise.resolve();
    replies.add(2, enc('b'));
    await Promise.resolve();
    expect(sent.map((f) => plain(decodeBatchFrame(f)))).toEqual([
      [
        { id: 3, text: 'c' },
        { id: 1, text: 'a' },
      ],
      [{ id: 2, text: 'b' }],
    ]);
  });
});
