/**
 * Roles change in-process: a follower role that was stopped (its node leads now) must not act on
 * answers to requests it sent before, and a leader must not keep a full database copy per
 * abandoned seed. Real SQLite files, an in-memory transport whose requests the test answers.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadConfig } from '@flotilla/config';
import { Clock, FakeClock, MemoryLogger, systemClock } from '@flotilla/logging';
import { decodeEnvelope, encode, ErrorCode, PROTOCOL_VERSION, subjectsFor } from '@flotilla/protocol';
import { servedSnapshotsDirFor, Store, StoreOptions } from '@flotilla/storage';
import { TransportError } from '@flotilla/transport';
import type { IncomingMessage, Subscription, Transport } from '@flotilla/transport';
import { Counters, RoleContext } from './context';
import { FollowerRole } from './follower';
import { LeaderRole, toWire } from './leader';
import { MISSED_HEARTBEATS_STALE } from './cluster-view';
import { ReplicaNode } from './replica-node';
import { SyncTracker } from './sync-tracker';

interface Held {
  subject: string;
  data: Uint8Array;
  resolve: (d: Uint8Array) => void;
}

/** Routes publish/request to subscribers of the same process; requests of the `hold` kinds wait for the test. */
class MemoryTransport implements Transport {
  private readonly subs = new Map<string, Set<(m: IncomingMessage) => void>>();
  readonly held: Held[] = [];
  readonly connected = true;
  constructor(private readonly hold: (type: string) => boolean) {}
  publish(subject: string, data: Uint8Array): void {
    for (const h of this.subs.get(subject) ?? []) h({ subject, data });
  }
  subscribe(subject: string, handler: (m: IncomingMessage) => void): Subscription {
    const set = this.subs.get(subject) ?? new Set();
    this.subs.set(subject, set);
    set.add(handler);
    return { unsubscribe: () => set.delete(handler) };
  }
  /** When set, a request nobody is held for or subscribed to fails as NATS's "no responders" does. */
  noResponders = false;
  /** Requests made so far. */
  requests = 0;
  request(subject: string, data: Uint8Array): Promise<Uint8Array> {
    this.requests++;
    return new Promise((resolve, reject) => {
      const handlers = this.subs.get(subject);
      if (this.noResponders && !handlers?.size) return reject(new TransportError('no-responders', `no responders on ${subject}`));
      if (this.hold(String(decodeEnvelope(data).type)) || !handlers?.size) return this.held.push({ subject, data, resolve });
      for (const h of handlers) h({ subject, data, respond: resolve });
    });
  }
  async close(): Promise<void> {}
}

const dirs: string[] = [];
const stores: Store[] = [];
afterAll(() => {
  for (const s of stores) s.close();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function context(
  node: string,
  transport: Transport,
  options: { config?: Record<string, unknown>; store?: StoreOptions; clock?: Clock } = {},
): RoleContext & { fatals: Error[]; lines: MemoryLogger } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-roles-'));
  dirs.push(dir);
  const store = Store.open(path.join(dir, 'db.sqlite'), options.store);
  stores.push(store);
  const fatals: Error[] = [];
  const lines = new MemoryLogger({ node });
  return {
    node, store, transport, subjects: subjectsFor('roles'), clock: options.clock ?? systemClock, log: lines,
    config: loadConfig({ cluster: 'roles', node, ...options.config }, {}), counters: new Counters(),
    fatal: (err: Error) => void fatals.push(err),
    fatals, lines,
  };
}

/**
 * Makes every node on `t` hear a heartbeat of `name` in `role` at `applied`. The memory transport
 * matches subjects exactly, not wildcards: it goes to the all-heartbeats subject nodes listen on.
 */
function hear(t: MemoryTransport, ctx: RoleContext, name: string, role: string, applied: number): void {
  const lsn = String(applied);
  t.publish(ctx.subjects.heartbeatAll, encode({ type: 'hb', v: PROTOCOL_VERSION, node: name, role, epoch: 1, leader: 'l', lsn, appliedLsn: lsn, flushedLsn: lsn, lagMs: 0, sync: false, mode: 'async', logFormat: 'logical', version: 'test', ts: ctx.clock.now() }));
}

/** A ReplicaNode on `ctx`, started, leading epoch 1 or following leader 'l', as its lease stub says. */
function startNode(ctx: RoleContext, isLeader: boolean): ReplicaNode {
  const view = { leader: 'l', epoch: 1, isLeader };
  const lease = { isValidLeader: () => isLeader, validForMs: () => (isLeader ? 1000 : 0), leadership: view, handOver: async () => view, yieldTo: () => undefined };
  const node = new ReplicaNode(ctx, lease, 'test');
  node.start();
  node.onLeadership(view);
  return node;
}

/** What ReplicaNode.onLeadership does to a store when its node starts leading. */
function lead(ctx: RoleContext, epoch: number): void {
  ctx.store.setDurability('deferred');
  ctx.store.startCapture();
  ctx.store.beginEpoch(epoch);
  ctx.store.syncWal();
}

/** An async leader role at epoch 1 on `ctx` (its store made a leader's first), started. */
function startLeaderRole(ctx: RoleContext): LeaderRole {
  lead(ctx, 1);
  const leader = new LeaderRole(ctx, 1, () => true, new SyncTracker({ mode: 'async', syncFollowers: 1, syncTimeoutMs: 2000, syncPolicy: 'block' }, ctx.log));
  leader.start();
  return leader;
}

async function until(what: string, f: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('a catch-up answer that arrives after the follower role stopped (its node leads now) is dropped, not applied to the leader', async () => {
  const t = new MemoryTransport((type) => type === 'catchup');
  const old = context('old', t);
  lead(old, 1);
  old.store.executeBatch([{ statements: [{ sql: 'CREATE TABLE t(k INTEGER PRIMARY KEY)' }] }], 1);
  old.store.executeBatch([{ statements: [{ sql: 'INSERT INTO t VALUES (1)' }] }], 1);
  const f = context('f', t);
  f.store.applyEntries(old.store.readLogAfter(0, 1 << 20, 1));
  const role = new FollowerRole(f, 1, 'old', () => undefined, () => true);
  role.start();
  await until('the catch-up request', () => t.held.length === 1);
  role.stop();
  lead(f, 2);
  const before = f.store.lastLsn;
  // The old leader, still shutting down, answers the request sent before.
  const reply = { type: 'catchup-reply', v: PROTOCOL_VERSION, epoch: 1, leader: 'old', leaderLsn: String(old.store.lastLsn), entries: old.store.readLogAfter(1, 1 << 20).map(toWire), epochs: old.store.epochHistory() };
  t.held[0].resolve(encode(reply));
  // The reply is handled in the microtasks that follow its resolution (no timer is involved):
  // two turns of the event loop drain them.
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  expect(f.fatals).toEqual([]);
  expect(f.store.lastLsn).toBe(before);
  expect(f.lines.lines.map((l) => l.msg)).not.toContain('apply failed: this replica cannot follow the log');
});

test('a seed waiting for snapshot-end when its role stopped does not install the snapshot over the new leader', async () => {
  const t = new MemoryTransport((type) => type === 'snapshot-end');
  const old = context('old', t);
  const leader = startLeaderRole(old);
  try {
    old.store.executeBatch([{ statements: [{ sql: 'CREATE TABLE t(k INTEGER PRIMARY KEY)' }] }], 1);
    old.store.executeBatch([{ statements: [{ sql: 'INSERT INTO t VALUES (1)' }] }], 1);
    const f = context('f', t); // empty: it must be seeded
    const role = new FollowerRole(f, 1, 'old', () => undefined, () => true);
    role.start();
    await until('snapshot-end sent', () => t.held.length === 1);
    role.stop();
    lead(f, 2);
    f.store.executeBatch([{ statements: [{ sql: 'CREATE TABLE mine(x)' }] }], 2);
    const mine = { lsn: f.store.lastLsn, epoch: f.store.lastEntryEpoch };
    t.held[0].resolve(encode({ type: 'ok', v: PROTOCOL_VERSION }));
    await until('the seed to end', () => f.lines.lines.some((l) => /snapshot seeding (finished|failed)/.test(l.msg)));
    expect(f.lines.lines.map((l) => l.msg)).not.toContain('snapshot seeding finished');
    expect({ lsn: f.store.lastLsn, epoch: f.store.lastEntryEpoch }).toEqual(mine);
    expect(f.store.query('SELECT count(*) AS n FROM mine').rows).toEqual([{ n: 0 }]);
  } finally {
    leader.stop();
  }
});

test('a node that begins a new snapshot abandons its earlier one: the leader keeps one copy, not one per retry', async () => {
  const t = new MemoryTransport(() => false);
  const l = context('l', t);
  const leader = startLeaderRole(l);
  try {
    l.store.executeBatch([{ statements: [{ sql: 'CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB)' }] }], 1);
    for (let i = 0; i < 20; i++) l.store.executeBatch([{ statements: [{ sql: `INSERT INTO t VALUES (${i}, randomblob(50000))` }] }], 1);
    const dir = servedSnapshotsDirFor(l.store.file);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      // A seed that failed after begin (a timeout, a full disk) and is retried.
      const begun = decodeEnvelope(await t.request(l.subjects.snapshot('l'), encode({ type: 'snapshot-begin', v: PROTOCOL_VERSION, node: 'newcomer' })));
      ids.push(String(begun.id));
    }
    await until('only the last snapshot file left', () => fs.readdirSync(dir).filter((n) => n.endsWith('.sqlite')).length === 1);
    expect(fs.readdirSync(dir).filter((n) => n.endsWith('.sqlite'))).toEqual([`${ids[2]}.sqlite`]);
    const stale = decodeEnvelope(await t.request(l.subjects.snapshot('l'), encode({ type: 'snapshot-chunk', v: PROTOCOL_VERSION, id: ids[0], index: 0 })));
    expect(stale).toMatchObject({ type: 'error', error: { code: 'NOT_FOUND' } });
  } finally {
    leader.stop();
  }
});

test('a lease view older than the leader the follower already follows (a late watch event) does not point it back', async () => {
  const t = new MemoryTransport((type) => type === 'catchup');
  const f = context('f', t);
  const role = new FollowerRole(f, 7, 'new', () => undefined, () => true);
  role.start();
  try {
    await until('the first catch-up request', () => t.held.length === 1);
    role.repoint('deposed', 6);
    expect(f.lines.lines.map((l) => l.msg)).toContain('ignoring an older leader than the one followed');
    // Its next catch-up round still asks the leader of epoch 7.
    t.held[0].resolve(encode({ type: 'error', v: PROTOCOL_VERSION, error: { code: 'UNAVAILABLE', message: 'try again' } }));
    await until('the next catch-up request', () => t.held.length === 2);
    expect(t.held[1].subject).toBe(f.subjects.catchup('new'));
    expect(decodeEnvelope(t.held[1].data)).toMatchObject({ epoch: 7 });
  } finally {
    role.stop();
  }
});

test('a snapshot being served pins the log after its LSN: the seeded node can catch up from it, however much was written meanwhile', async () => {
  const t = new MemoryTransport(() => false);
  const ctx = context('l', t, { config: { logRetentionEntries: 10 } });
  const { store } = ctx;
  const node = startNode(ctx, true);
  try {
    const write = (sql: string) => node.localWrite(encode({ type: 'write', v: PROTOCOL_VERSION, statements: [{ sql }] }))!;
    await write('CREATE TABLE t(k INTEGER PRIMARY KEY)');
    for (let i = 0; i < 30; i++) await write(`INSERT INTO t VALUES (${i})`);
    const begun = decodeEnvelope(await t.request(ctx.subjects.snapshot('l'), encode({ type: 'snapshot-begin', v: PROTOCOL_VERSION, node: 'newcomer' })));
    const at = Number(begun.lsn);
    for (let i = 30; i < 60; i++) await write(`INSERT INTO t VALUES (${i})`);
    (node as unknown as { trimLog(): void }).trimLog();
    expect(store.oldestLsn()).toBeLessThanOrEqual(at + 1);
    const reply = decodeEnvelope(await t.request(ctx.subjects.catchup('l'), encode({ type: 'catchup', v: PROTOCOL_VERSION, node: 'newcomer', epoch: 1, after: String(at), lastEpoch: 1, maxBytes: 1 << 20 })));
    expect(reply.type).toBe('catchup-reply');
  } finally {
    await node.stop();
  }
});

test('entries of a deposed leader buffered during a catch-up are skipped, and the new leader\'s entry at the same LSN is not lost with them', async () => {
  const t = new MemoryTransport((type) => type === 'catchup');
  // l: 1..3 in epoch 1. m: 1..2 of l, then its own 3' in epoch 2.
  const l = context('l', t);
  lead(l, 1);
  l.store.executeBatch([{ statements: [{ sql: 'CREATE TABLE t(k INTEGER PRIMARY KEY)' }] }], 1);
  l.store.executeBatch([{ statements: [{ sql: 'INSERT INTO t VALUES (1)' }] }], 1);
  l.store.executeBatch([{ statements: [{ sql: 'INSERT INTO t VALUES (2)' }] }], 1);
  const m = context('m', t);
  m.store.applyEntries(l.store.readLogAfter(0, 1 << 20, 2));
  lead(m, 2);
  m.store.executeBatch([{ statements: [{ sql: 'INSERT INTO t VALUES (30)' }] }], 2);
  const f = context('f', t);
  f.store.applyEntries(l.store.readLogAfter(0, 1 << 20, 1));
  const role = new FollowerRole(f, 1, 'l', () => undefined, () => true);
  role.start();
  const batch = (from: RoleContext, epoch: number, after: number) =>
    t.publish(f.subjects.log, encode({ type: 'entries', v: PROTOCOL_VERSION, epoch, leader: from.node, entries: from.store.readLogAfter(after, 1 << 20, 1).map(toWire) }));
  const reply = (from: RoleContext, epoch: number, leaderLsn: number, after: number) =>
    encode({ type: 'catchup-reply', v: PROTOCOL_VERSION, epoch, leader: from.node, leaderLsn: String(leaderLsn), entries: from.store.readLogAfter(after, 1 << 20).filter((e) => e.lsn <= leaderLsn).map(toWire), epochs: from.store.epochHistory() });
  try {
    await until('the first catch-up request', () => t.held.length === 1);
    t.held[0].resolve(reply(l, 1, 1, 1)); // nothing new: live at 1
    await until('live', () => role.state === 'live');
    batch(l, 1, 2); // l's 3 arrives, its 2 was lost: a gap, a catch-up to l
    await until('a catch-up to l', () => t.held.length === 2);
    role.repoint('m', 2); // l died; the lease names m
    t.held[1].resolve(encode({ type: 'error', v: PROTOCOL_VERSION, error: { code: 'UNAVAILABLE', message: 'l is gone' } }));
    await until('a catch-up to m', () => t.held.length === 3);
    expect(t.held[2].subject).toBe(f.subjects.catchup('m'));
    batch(m, 2, 2); // m's own 3' comes on the stream while its reply (log end 2) is on its way
    t.held[2].resolve(reply(m, 2, 2, 1));
    // m is idle now; its heartbeats announce 3. Whatever the follower asks of m, m answers.
    let answered = 3;
    await until('the follower at m\'s 3', () => {
      role.noteLeaderLsn(3, Date.now());
      while (t.held.length > answered) {
        const req = decodeEnvelope(t.held[answered].data);
        t.held[answered].resolve(reply(m, 2, 3, Number(req.after)));
        answered++;
      }
      return f.store.lastLsn === 3;
    });
    expect(f.store.lastEntryEpoch).toBe(2);
    expect(f.store.query('SELECT k FROM t ORDER BY k').rows).toEqual([{ k: 1 }, { k: 30 }]); // m's history: l's 1..2, then its own 3'
  } finally {
    role.stop();
  }
});

test('a follower whose leader does not answer says so in its log, once per interval, not never and not every retry', async () => {
  const t = new MemoryTransport(() => false);
  t.noResponders = true;
  const f = context('f', t);
  const role = new FollowerRole(f, 3, 'gone', () => undefined, () => true);
  role.start();
  try {
    const failures = () => f.lines.lines.filter((l) => l.msg === 'catch-up request failed; retrying');
    await until('the first failure logged', () => failures().length === 1);
    const asked = t.requests;
    await until('four more attempts', () => t.requests >= asked + 4); // it keeps retrying...
    expect(failures()).toHaveLength(1); // ...and said so once
    expect(failures()[0].fields).toMatchObject({ leader: 'gone' });
  } finally {
    role.stop();
  }
});

test('a node that begins a snapshot no longer counts as a copy of what it reported flushed before', async () => {
  const t = new MemoryTransport(() => false);
  const l = context('l', t);
  const leader = startLeaderRole(l);
  try {
    l.store.executeBatch([{ statements: [{ sql: 'CREATE TABLE t(k INTEGER PRIMARY KEY)' }] }], 1);
    const lsn = l.store.lastLsn;
    const ack = { type: 'ack', v: PROTOCOL_VERSION, node: 'x', epoch: 1, received: String(lsn), flushed: String(lsn), applied: String(lsn), live: true };
    t.publish(l.subjects.ack, encode(ack));
    const outcome = (): Promise<boolean> => new Promise((resolve) => {
      leader.sync.wait(lsn, { replicas: 2 }, systemClock.monotonic(), (o) => resolve(o.ok));
      setImmediate(() => resolve(false)); // not satisfied at once
    });
    expect(await outcome()).toBe(true); // x's copy counts
    await t.request(l.subjects.snapshot('l'), encode({ type: 'snapshot-begin', v: PROTOCOL_VERSION, node: 'x' }));
    expect(await outcome()).toBe(false); // x is replacing its database: no copy of anything
  } finally {
    leader.stop();
  }
});

test('a node keeps the log another follower needs (heard in its heartbeats, saved across a restart) until that follower is silent longer than the log\'s age limit', async () => {
  const t = new MemoryTransport(() => true); // every request waits: the follower role's catch-up never ends
  const clock = new FakeClock();
  const AGE_MS = 60_000;
  const ctx = context('n', t, { clock, config: { logRetentionEntries: 10, logRetentionMs: AGE_MS } });
  lead(ctx, 1);
  ctx.store.executeBatch([{ statements: [{ sql: 'CREATE TABLE t(k INTEGER PRIMARY KEY)' }] }], 1);
  for (let i = 0; i < 39; i++) ctx.store.executeBatch([{ statements: [{ sql: `INSERT INTO t VALUES (${i})` }] }], 1);
  ctx.store.stopCapture();
  const last = ctx.store.lastLsn;
  expect(last).toBeGreaterThanOrEqual(40);
  const trim = (node: ReplicaNode) => (node as unknown as { trimLog(): void }).trimLog();

  const first = startNode(ctx, false);
  hear(t, ctx, 'f', 'follower', 5);
  trim(first);
  // A follower too keeps what follower f still needs (entries 6 and on), not only its last 10.
  expect(ctx.store.oldestLsn()).toBe(6);
  await first.stop();
  expect(ctx.store.readKnownPositions()).toEqual({ f: { applied: 5, heardMs: clock.now() } });

  // Restarted, it has not heard from f since, and still keeps them.
  const second = startNode(ctx, false);
  try {
    trim(second);
    expect(ctx.store.oldestLsn()).toBe(6);
    expect(ctx.lines.lines.filter((l) => l.msg === 'follower position forgotten')).toHaveLength(0);
    // f silent for longer than the log's age limit: forgotten, and the log is trimmed to its last 10.
    clock.advance(AGE_MS + 1000);
    expect(ctx.lines.lines.filter((l) => l.msg === 'follower position forgotten').map((l) => l.fields)).toEqual([expect.objectContaining({ follower: 'f', applied: 5 })]);
    expect(ctx.store.oldestLsn()).toBe(last - 10 + 1);
  } finally {
    await second.stop();
  }
  expect(ctx.store.readKnownPositions()).toEqual({});
});

test('a leader refuses {replicas: n} above the replicas it has heard of (for five minutes) before running it, once it has heard heartbeats for three intervals', async () => {
  const t = new MemoryTransport(() => false);
  const clock = new FakeClock();
  const ctx = context('l', t, { clock });
  const node = startNode(ctx, true);
  const heartbeat = (name: string, role: string) => hear(t, ctx, name, role, 1);
  const write = async (replicas: number) => decodeEnvelope(await node.localWrite(encode({ type: 'write', v: PROTOCOL_VERSION, statements: [{ sql: 'CREATE TABLE t(k)' }], durability: { replicas } }))!);
  try {
    heartbeat('l', 'leader');
    heartbeat('f', 'follower');
    heartbeat('g', 'seeding');
    clock.advance(MISSED_HEARTBEATS_STALE * ctx.config.heartbeatIntervalMs);
    const lsn = ctx.store.lastLsn;
    const refused = await write(4);
    expect(refused).toMatchObject({ type: 'error', error: { code: ErrorCode.NOT_ENOUGH_REPLICAS } });
    expect((refused.error as { message: string }).message).toMatch(/needs 4 copies, but 3 replicas are known \(f, g, l\); nothing was applied/);
    // g silent for over five minutes: no longer counted.
    clock.advance(5 * 60_000);
    heartbeat('f', 'follower');
    const second = await write(3);
    expect((second.error as { message: string }).message).toMatch(/needs 3 copies, but 2 replicas are known \(f, l\)/);
    expect(ctx.store.lastLsn).toBe(lsn);
  } finally {
    await node.stop();
  }
});

test('a query for the leader alone that finds its turn\'s SQL time taken runs a turn later; one any replica may answer is refused at once; a stop answers the put-off ones', async () => {
  const t = new MemoryTransport(() => false);
  const ctx = context('l', t, { store: { statementTimeoutMs: 100 } });
  expect(ctx.store.statementDeadlines).toBe(true);
  const node = startNode(ctx, true);
  const ask = (sql: string, requireLeader: boolean) => t.request(ctx.subjects.read('l'), encode({ type: 'query', v: PROTOCOL_VERSION, sql, ...(requireLeader ? { requireLeader } : {}) })).then(decodeEnvelope);
  const forEver = 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) AS n FROM c';
  const freshTurn = () => new Promise((r) => setTimeout(r, 50)); // a turn with its whole SQL time
  try {
    await freshTurn();
    // All in one turn of the event loop: the memory transport runs each handler at once, so the
    // first query runs its whole deadline before the second is asked, and the second runs what is
    // left of the turn's SQL time (a tick's worth) before the third is asked.
    const first = ask(forEver, true);
    const second = ask(forEver, true);
    const small = ask('SELECT 41 + 1 AS n', true);
    const anyReplica = ask('SELECT 41 + 1 AS n', false);
    // Each runaway query gets its own whole deadline (the second in a later turn): its own 400...
    expect(await first).toMatchObject({ type: 'error', error: { code: ErrorCode.STATEMENT_TIMEOUT } });
    expect(await second).toMatchObject({ type: 'error', error: { code: ErrorCode.STATEMENT_TIMEOUT } });
    // ...the small one for the leader is answered, not refused...
    expect(await small).toMatchObject({ type: 'query-reply', rows: [{ n: 42 }] });
    // ...and one any replica may answer is refused at once (the gateway asks another node).
    expect(await anyReplica).toMatchObject({ type: 'error', error: { code: ErrorCode.UNAVAILABLE } });

    // Put off, then the node stops (in the same turn: before any put-off query runs again):
    // answered UNAVAILABLE, not run on a closed store. The second runaway takes the turn's rest.
    await freshTurn();
    const runaway = ask(forEver, true);
    void ask(forEver, true);
    const putOff = ask('SELECT 1 AS n', true);
    expect(await runaway).toMatchObject({ type: 'error', error: { code: ErrorCode.STATEMENT_TIMEOUT } });
    await node.stop();
    expect(await putOff).toMatchObject({ type: 'error', error: { code: ErrorCode.UNAVAILABLE, message: expect.stringContaining('stopping') } });
  } finally {
    await node.stop();
  }
});

test('known positions: a wall-clock step changes nothing, a node heard as leader or seeding holds nothing back, one the log no longer reaches is ignored, a long-silent follower is forgotten once', async () => {
  const t = new MemoryTransport(() => true);
  const fake = new FakeClock();
  let wallStepMs = 0;
  const clock: Clock = { now: () => fake.now() + wallStepMs, monotonic: () => fake.monotonic(), setTimeout: (fn, ms) => fake.setTimeout(fn, ms), setInterval: (fn, ms) => fake.setInterval(fn, ms) };
  const AGE_MS = 60_000;
  const ctx = context('n', t, { clock, config: { logRetentionEntries: 10, logRetentionMs: AGE_MS } });
  lead(ctx, 1);
  ctx.store.executeBatch([{ statements: [{ sql: 'CREATE TABLE t(k INTEGER PRIMARY KEY)' }] }], 1);
  for (let i = 0; i < 59; i++) ctx.store.executeBatch([{ statements: [{ sql: `INSERT INTO t VALUES (${i})` }] }], 1);
  ctx.store.stopCapture();
  const last = ctx.store.lastLsn;
  const node = startNode(ctx, false);
  const trim = () => (node as unknown as { trimLog(): void }).trimLog();
  const heartbeat = (name: string, role: string, applied: number) => hear(t, ctx, name, role, applied);
  try {
    heartbeat('c', 'follower', 5);
    trim();
    expect(ctx.store.oldestLsn()).toBe(6);
    // The wall clock steps back 30 s: a newer heartbeat still counts.
    wallStepMs = -30_000;
    heartbeat('c', 'follower', 8);
    trim();
    expect(ctx.store.oldestLsn()).toBe(9);
    heartbeat('a', 'follower', 20);
    trim();
    expect(ctx.store.oldestLsn()).toBe(9);
    // c seeds: its old position no longer holds the log back; a leads now (a switchover) and needs
    // nothing from anyone's log.
    heartbeat('c', 'seeding', 0);
    trim();
    expect(ctx.store.oldestLsn()).toBe(21);
    heartbeat('a', 'leader', last);
    trim();
    expect(ctx.store.oldestLsn()).toBe(last - 10 + 1);
    // A follower further behind than this log reaches will be seeded anyway: nothing is kept for it.
    heartbeat('b', 'follower', 3);
    trim();
    expect(ctx.store.oldestLsn()).toBe(last - 10 + 1);
    // d falls silent: forgotten after the log's age limit, and said once, not every round.
    heartbeat('d', 'follower', last - 10);
    fake.advance(3 * AGE_MS);
    expect(ctx.lines.lines.filter((l) => l.msg === 'follower position forgotten').map((l) => l.fields.follower)).toEqual(['d']);
  } finally {
    await node.stop();
  }
});

test('a leader forgets a follower silent for longer than the log\'s age limit once, though its last ack stays with the leader role', async () => {
  const t = new MemoryTransport(() => false);
  const clock = new FakeClock();
  const AGE_MS = 60_000;
  const ctx = context('l', t, { clock, config: { logRetentionMs: AGE_MS } });
  const node = startNode(ctx, true);
  try {
    t.publish(ctx.subjects.ack, encode({ type: 'ack', v: PROTOCOL_VERSION, node: 'f', epoch: 1, received: '1', flushed: '1', applied: '1' }));
    clock.advance(1000);
    expect(ctx.store.readKnownPositions()).toMatchObject({ f: { applied: 1 } });
    clock.advance(3 * AGE_MS);
    expect(ctx.lines.lines.filter((l) => l.msg === 'follower position forgotten').map((l) => l.fields.follower)).toEqual(['f']);
    expect(ctx.store.readKnownPositions()).toEqual({});
  } finally {
    await node.stop();
  }
});
