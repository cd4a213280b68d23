import { WalFlusher } from './wal-flusher';

/** A flush the test completes by hand. */
function harness() {
  const calls: { resolve: (lsn: number) => void; reject: (e: Error) => void }[] = [];
  const flushed: number[] = [];
  const errors: string[] = [];
  let active = true;
  const f = new WalFlusher(
    () => new Promise<number>((resolve, reject) => calls.push({ resolve, reject })),
    (lsn) => flushed.push(lsn),
    (e) => errors.push(e.message),
    () => active,
  );
  const tick = () => new Promise((r) => setImmediate(r));
  return { f, calls, flushed, errors, tick, stop: () => (active = false) };
}

test('one flush at a time; requests during it coalesce into exactly one more', async () => {
  const h = harness();
  h.f.request();
  h.f.request();
  h.f.request();
  expect(h.calls).toHaveLength(1);
  h.calls[0].resolve(5);
  await h.tick();
  expect(h.flushed).toEqual([5]);
  expect(h.calls).toHaveLength(2);
  h.calls[1].resolve(9);
  await h.tick();
  expect(h.flushed).toEqual([5, 9]);
  expect(h.calls).toHaveLength(2);
  h.f.request();
  expect(h.calls).toHaveLength(3);
});

test('a result after the owner stopped is dropped; a failure is reported, not flushed', async () => {
  const h = harness();
  h.f.request();
  h.stop();
  h.calls[0].resolve(3);
  await h.tick();
  expect(h.flushed).toEqual([]);
  const g = harness();
  g.f.request();
  g.calls[0].reject(new Error('EIO'));
  await g.tick();
  expect(g.flushed).toEqual([]);
  expect(g.errors).toEqual(['EIO']);
});
