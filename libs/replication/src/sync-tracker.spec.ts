import { MemoryLogger } from '@flotilla/logging';
import { SyncSettings, SyncTracker, WaitOutcome } from './sync-tracker';

const semi: SyncSettings = { mode: 'semi-sync', syncFollowers: 1, syncTimeoutMs: 1000, syncPolicy: 'block' };

function setup(settings: SyncSettings = semi) {
  const log = new MemoryLogger();
  const t = new SyncTracker(settings, log);
  const outcomes = new Map<number, WaitOutcome>();
  const wait = (lsn: number, now: number, durability?: Parameters<SyncTracker['wait']>[1]) => {
    t.noteCommitted(lsn);
    t.wait(lsn, durability, now, (o) => outcomes.set(lsn, o));
  };
  return { t, log, outcomes, wait };
}

test('semi-sync: the most caught-up follower becomes sync; a write waits for it and only for it', () => {
  const { t, outcomes, wait } = setup();
  t.onAck('b', 5, 0);
  t.onAck('c', 7, 0);
  expect(t.members).toEqual(['b']); // b was first; c does not displace a healthy member
  wait(8, 10);
  t.onAck('c', 8, 20);
  expect(outcomes.get(8)).toBeUndefined(); // c is async: its flush does not count
  t.onAck('b', 8, 30);
  expect(outcomes.get(8)).toEqual({ ok: true });
});

test('a sync follower slower than syncTimeoutMs is replaced by the most caught-up other one', () => {
  const { t, outcomes, wait, log } = setup();
  t.onAck('b', 10, 0);
  t.onAck('c', 10, 0);
  wait(11, 100);
  t.onAck('c', 11, 150);
  t.tick(900);
  expect(outcomes.get(11)).toBeUndefined();
  t.tick(1100);
  expect(t.members).toEqual(['c']);
  expect(outcomes.get(11)).toEqual({ ok: true });
  expect(log.lines.some((l) => l.msg === 'sync followers changed')).toBe(true);
});

test('block: with no follower able to flush, the write fails after syncTimeoutMs and is never acknowledged', () => {
  const { t, outcomes, wait } = setup();
  t.onAck('b', 1, 0);
  wait(2, 10);
  t.tick(1009);
  expect(outcomes.get(2)).toBeUndefined();
  t.tick(1011);
  expect(outcomes.get(2)).toMatchObject({ ok: false });
  expect(t.degraded).toBe(false);
});

test('degrade: writes continue without a sync follower, loudly, until one catches up again', () => {
  const { t, outcomes, wait, log } = setup({ ...semi, syncPolicy: 'degrade' });
  t.onAck('b', 1, 0);
  wait(2, 10);
  t.tick(1011);
  expect(outcomes.get(2)).toEqual({ ok: true });
  expect(t.degraded).toBe(true);
  expect(log.lines.some((l) => l.level === 'warn' && /degraded/.test(l.msg))).toBe(true);
  wait(3, 1020);
  expect(outcomes.get(3)).toEqual({ ok: true }); // no waiting while degraded
  t.onAck('b', 3, 1030);
  t.tick(1040);
  expect(t.degraded).toBe(false);
  wait(4, 1050);
  expect(outcomes.get(4)).toBeUndefined();
});

test('durability asks for more, never less: {replicas: 3} waits for two followers even in async mode', () => {
  const { t, outcomes, wait } = setup({ ...semi, mode: 'async' });
  t.onAck('b', 0, 0);
  t.onAck('c', 0, 0);
  wait(1, 0, 'leader');
  expect(outcomes.get(1)).toEqual({ ok: true });
  wait(2, 0, { replicas: 3 });
  t.onAck('b', 2, 1);
  expect(outcomes.get(2)).toBeUndefined();
  t.onAck('c', 2, 2);
  expect(outcomes.get(2)).toEqual({ ok: true });
});

test('sync mode: every follower must flush; a missing one is not silently dropped', () => {
  const { t, outcomes, wait } = setup({ ...semi, mode: 'sync' });
  t.onAck('b', 0, 0);
  t.onAck('c', 0, 0);
  expect(t.members).toEqual(['b', 'c']);
  wait(1, 10);
  t.onAck('b', 1, 20);
  t.tick(500);
  expect(outcomes.get(1)).toBeUndefined();
  t.tick(1011);
  expect(outcomes.get(1)).toMatchObject({ ok: false });
});

test('abortAll fails every waiting write', () => {
  const { t, outcomes, wait } = setup();
  t.onAck('b', 0, 0);
  wait(1, 0);
  t.abortAll('stepping down');
  expect(outcomes.get(1)).toEqual({ ok: false, reason: 'stepping down' });
});

test('a follower that is still catching up is never made synchronous; it joins once live', () => {
  const { t, outcomes, wait } = setup({ ...semi, mode: 'sync' });
  t.onAck('b', 10, 0, true);
  t.onAck('new', 0, 0, false);
  expect(t.members).toEqual(['b']);
  wait(11, 1);
  t.onAck('b', 11, 2, true);
  expect(outcomes.get(11)).toEqual({ ok: true }); // the catching-up node does not hold writes back
  t.onAck('new', 11, 3, true);
  expect(t.members).toEqual(['b', 'new']);
});

test('degrade: a write that asked for a follower copy itself still fails; the plain ones go on degraded', () => {
  const { t, outcomes, wait } = setup({ ...semi, syncPolicy: 'degrade' });
  t.onAck('b', 1, 0);
  wait(2, 10);
  wait(3, 10, 'sync');
  wait(4, 10);
  t.tick(1011);
  expect(t.degraded).toBe(true);
  expect(outcomes.get(2)).toEqual({ ok: true });
  expect(outcomes.get(3)).toMatchObject({ ok: false, reason: expect.stringContaining('1 follower(s)') });
  expect(outcomes.get(4)).toEqual({ ok: true });
});

test('degrade: a steady trickle of durability "sync" writes does not keep the plain ones failing', () => {
  const { t, outcomes, wait } = setup({ ...semi, syncPolicy: 'degrade' });
  t.onAck('b', 1, 0);
  // In pairs that expire in the same tick: a 'sync' write and a plain one.
  for (let lsn = 2; lsn < 12; lsn++) wait(lsn, 10 + Math.floor(lsn / 2) * 100, lsn % 2 === 0 ? 'sync' : undefined);
  for (let now = 1000; now <= 3000; now += 20) t.tick(now);
  for (let lsn = 2; lsn < 12; lsn++) expect(outcomes.get(lsn)?.ok).toBe(lsn % 2 !== 0);
});

test('switching semi-sync to async at run time acknowledges the writes waiting for the sync set', () => {
  const { t, outcomes, wait } = setup();
  t.onAck('b', 1, 0);
  wait(2, 10);
  wait(3, 10, 'sync');
  expect(outcomes.size).toBe(0);
  t.configure({ ...semi, mode: 'async' }, 20);
  expect(outcomes.get(2)).toEqual({ ok: true });
  expect(outcomes.get(3)).toBeUndefined(); // it asked for a follower copy itself: still waits for one
  t.onAck('b', 3, 30);
  expect(outcomes.get(3)).toEqual({ ok: true });
});

test('a degraded tracker switched to async is no longer degraded, and says so', () => {
  const { t, wait, log } = setup({ ...semi, syncPolicy: 'degrade' });
  t.onAck('b', 1, 0);
  wait(2, 10);
  t.tick(1011);
  expect(t.degraded).toBe(true);
  t.configure({ ...semi, mode: 'async', syncPolicy: 'degrade' }, 1020);
  expect(t.degraded).toBe(false);
  expect(log.lines.some((l) => l.msg === 'replication no longer degraded: the mode is now async')).toBe(true);
});

test('a follower whose position went down (rewound, re-seeded) no longer counts for what it lost', () => {
  const { t, outcomes, wait } = setup();
  t.onAck('b', 10, 0);
  t.onAck('b', 5, 10); // rewound to 5
  wait(8, 20);
  expect(outcomes.get(8)).toBeUndefined();
  t.onAck('b', 8, 30);
  expect(outcomes.get(8)).toEqual({ ok: true });
});

test('a switch to block ends a degradation: the next write waits for a real copy again (and fails without one)', () => {
  const { t, outcomes, wait } = setup({ ...semi, syncPolicy: 'degrade' });
  t.onAck('b', 1, 0);
  wait(2, 10);
  t.tick(1011);
  expect(t.degraded).toBe(true);
  t.configure({ ...semi, syncPolicy: 'block' }, 1100);
  expect(t.degraded).toBe(false);
  wait(3, 1200);
  expect(outcomes.get(3)).toBeUndefined(); // was acknowledged at once while the degradation stayed
  t.tick(2201);
  expect(outcomes.get(3)).toMatchObject({ ok: false });
});

test('a strict wait (a settings entry) is not satisfied by a degradation: it gets a real copy or fails', () => {
  const { t, outcomes, wait } = setup({ ...semi, syncPolicy: 'degrade' });
  t.onAck('b', 1, 0);
  wait(2, 10);
  t.tick(1011);
  expect(t.degraded).toBe(true);
  t.noteCommitted(3);
  t.wait(3, undefined, 1100, (o) => outcomes.set(3, o), { strict: true });
  expect(outcomes.get(3)).toBeUndefined();
  t.tick(2101);
  expect(outcomes.get(3)).toMatchObject({ ok: false });
  t.noteCommitted(4);
  t.wait(4, undefined, 2200, (o) => outcomes.set(4, o), { strict: true });
  t.onAck('b', 4, 2300);
  expect(outcomes.get(4)).toEqual({ ok: true });
});

test('sync mode: re-posting the settings keeps a follower that is away in the set (writes still wait for it)', () => {
  const sync: SyncSettings = { mode: 'sync', syncFollowers: 1, syncTimeoutMs: 1000, syncPolicy: 'block' };
  const { t, outcomes, wait } = setup(sync);
  t.onAck('b', 1, 0);
  t.onAck('c', 1, 0);
  expect(t.members).toEqual(['b', 'c']);
  t.onAck('b', 1, 5000); // c has been silent since 0
  t.configure({ ...sync, syncTimeoutMs: 1500 }, 5000);
  expect(t.members).toEqual(['b', 'c']);
  wait(2, 5000);
  t.onAck('b', 2, 5010);
  expect(outcomes.get(2)).toBeUndefined(); // c has not flushed it
});

test('degraded, a member that stays behind gives way to a follower that has caught up, and the degradation ends', () => {
  const { t, wait } = setup({ ...semi, syncPolicy: 'degrade' });
  t.onAck('b', 1, 0);
  t.onAck('c', 1, 0, false); // c catching up: not a candidate yet
  wait(2, 10);
  t.tick(1011);
  expect({ degraded: t.degraded, members: t.members }).toEqual({ degraded: true, members: ['b'] });
  // b keeps acking but stays behind; c is live again and current.
  for (let now = 1100, lsn = 3; now < 4000; now += 100, lsn++) {
    wait(lsn, now);
    t.onAck('b', 1, now);
    t.onAck('c', lsn, now, true);
    t.tick(now + 20);
  }
  expect(t.members).toEqual(['c']);
  expect(t.degraded).toBe(false);
});
