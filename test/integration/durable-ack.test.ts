/**
 * Acknowledgement waits for fdatasync, which runs off the event loop: the leader role and a follower
 * role in this process over a real nats-server and real SQLite files, each store's async WAL flush
 * held behind a gate the test opens. The leader publishes while its own flush runs; the client
 * reply comes only after the leader's flush AND (semi-sync) the sync follower's flush returned.
 *
 * And what the leader publishes when (streamBatchMs): under load, entries no write waits for are
 * held and go out together; an entry a follower must flush goes at once.
 */
import * as path from 'node:path';
import { loadConfig } from '@flotilla/config';
import { MemoryLogger, systemClock } from '@flotilla/logging';
import { decodeEnvelope, Durability, encode, ErrorCode, PROTOCOL_VERSION, subjectsFor } from '@flotilla/protocol';
import { Counters, FollowerRole, LeaderRole, RoleContext, SyncTracker } from '@flotilla/replication';
import { LogEntry, Store } from '@flotilla/storage';
import { startNatsServer, stopAll, tempDir, waitFor } from '@flotilla/testing';
import { NatsTransport } from '@flotilla/transport';
import type { NatsServer } from '@flotilla/local-cluster';

/** A store whose async WAL flush waits until the test opens the gate (then really fdatasyncs). */
class Gate {
  private open = false;
  private waiting: (() => void)[] = [];
  pending = 0;
  openedAtMs = 0;
  constructor(store: Store) {
    const real = store.syncWalAsync.bind(store);
    store.syncWalAsync = async () => {
      if (!this.open) {
        this.pending++;
        await new Promise<void>((r) => this.waiting.push(r));
      }
      return real();
    };
  }
  release(): void {
    this.open = true;
    this.openedAtMs = performance.now();
    for (const r of this.waiting.splice(0)) r();
  }
}

let nats: NatsServer;
const transports: NatsTransport[] = [];
const stores: Store[] = [];
const stops: (() => void)[] = [];

beforeAll(async () => {
  nats = await startNatsServer();
});

afterEach(async () => {
  for (const s of stops.splice(0)) s();
  await Promise.all(transports.splice(0).map((t) => t.close()));
  for (const s of stores.splice(0)) s.close();
});

afterAll(async () => {
  await stopAll();
});

async function context(node: string, dir: string, cluster: string, streamBatchMs?: number): Promise<RoleContext> {
  const store = Store.open(path.join(dir, `${node}.sqlite`));
  stores.push(store);
  const transport = await NatsTransport.connect({ servers: nats.url, name: node });
  transports.push(transport);
  return {
    node, store, transport, subjects: subjectsFor(cluster), clock: systemClock,
    log: new MemoryLogger({ node }), config: loadConfig({ cluster, node, streamBatchMs }, {}), counters: new Counters(),
    fatal: (err) => { throw err; },
  };
}

async function startLeader(ctx: RoleContext, mode: 'async' | 'semi-sync', leaseValid: () => boolean = () => true): Promise<LeaderRole> {
  ctx.store.setDurability('deferred');
  ctx.store.startCapture();
  ctx.store.beginEpoch(1);
  ctx.store.syncWal();
  const sync = new SyncTracker({ mode, syncFollowers: 1, syncTimeoutMs: 30_000, syncPolicy: 'block' }, ctx.log);
  const leader = new LeaderRole(ctx, 1, leaseValid, sync);
  leader.start();
  stops.push(() => leader.stop());
  // Subscriptions are registered at the server once the connection is flushed.
  await (ctx.transport as NatsTransport).nc.flush();
  return leader;
}

/** A follower of 'leader' at epoch 1 that flushes at once (as a sync follower does). */
async function startFollower(ctx: RoleContext): Promise<FollowerRole> {
  const follower = new FollowerRole(ctx, 1, 'leader', () => undefined, () => true);
  follower.start();
  stops.push(() => follower.stop());
  await (ctx.transport as NatsTransport).nc.flush();
  return follower;
}

/** Sends a write; resolves with the reply and the time it arrived. */
async function write(ctx: RoleContext, sql: string, key: string, durability?: Durability): Promise<{ reply: Record<string, unknown>; atMs: number }> {
  const data = await ctx.transport.request(ctx.subjects.write, encode({ type: 'write', v: PROTOCOL_VERSION, statements: [{ sql }], idempotencyKey: key, durability }), 30_000);
  return { reply: decodeEnvelope(data), atMs: performance.now() };
}

test('leader: the reply waits for its own fdatasync; followers get the entry while it runs', async () => {
  const dir = tempDir('flotilla-durable-ack-');
  const cluster = 'durable-a';
  const lctx = await context('leader', dir, cluster);
  const client = await context('client', dir, cluster);
  await startLeader(lctx, 'async');
  const ddl = await write(client, 'CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)', 'ddl');
  expect(ddl.reply.type).toBe('write-reply');

  // Everything the leader publishes from now on, as a follower would see it.
  const published: number[] = [];
  const sub = client.transport.subscribe(client.subjects.log, (m) => {
    for (const e of (decodeEnvelope(m.data).entries as { lsn: string }[]) ?? []) published.push(Number(e.lsn));
  });
  stops.push(() => sub.unsubscribe());
  const gate = new Gate(lctx.store);
  const before = lctx.store.lastLsn;
  const pending = write(client, "INSERT INTO t VALUES (1, 'a')", 'w1');
  // Committed, published and being flushed, but not acknowledged.
  await waitFor(() => lctx.store.lastLsn === before + 1 && gate.pending > 0 && published.includes(before + 1), { what: 'commit + publish with the flush held' });
  gate.release();
  const { reply, atMs } = await pending;
  expect(reply).toMatchObject({ type: 'write-reply', lsn: String(before + 1) });
  expect(atMs).toBeGreaterThanOrEqual(gate.openedAtMs);
});

test('semi-sync: the reply waits for the sync follower fdatasync; its ack reports flushed only after it', async () => {
  const dir = tempDir('flotilla-durable-ack-');
  const cluster = 'durable-b';
  const lctx = await context('leader', dir, cluster);
  const fctx = await context('follower', dir, cluster);
  const client = await context('client', dir, cluster);
  const leader = await startLeader(lctx, 'semi-sync');
  await startFollower(fctx);
  // The follower is live and synchronous once a write went through both.
  const ddl = await write(client, 'CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)', 'ddl');
  expect(ddl.reply.type).toBe('write-reply');
  await waitFor(() => leader.sync.members.includes('follower'), { what: 'follower in the sync set' });

  const acks: { flushed: number; applied: number; atMs: number }[] = [];
  const sub = client.transport.subscribe(client.subjects.ack, (m) => {
    const a = decodeEnvelope(m.data);
    acks.push({ flushed: Number(a.flushed), applied: Number(a.applied), atMs: performance.now() });
  });
  stops.push(() => sub.unsubscribe());
  const gate = new Gate(fctx.store);
  const lsn = lctx.store.lastLsn + 1;
  const pending = write(client, "INSERT INTO t VALUES (1, 'a')", 'w1');
  // Applied on the follower, its flush held: the leader (flushed itself) must still wait.
  await waitFor(() => fctx.store.lastLsn === lsn && gate.pending > 0 && leader.flushedLsn >= lsn, { what: 'applied on the follower, flush held' });
  gate.release();
  const { reply, atMs } = await pending;
  expect(reply).toMatchObject({ type: 'write-reply', lsn: String(lsn) });
  expect(atMs).toBeGreaterThanOrEqual(gate.openedAtMs);
  const firstFlushedAck = acks.find((a) => a.flushed >= lsn);
  expect(firstFlushedAck).toBeDefined();
  expect(firstFlushedAck!.atMs).toBeGreaterThanOrEqual(gate.openedAtMs);
  expect(fctx.store.tableChecksums()).toEqual(lctx.store.tableChecksums());
});

/** Every message the leader publishes on the change stream: when it arrived and the LSNs it carried. */
function recordStream(client: RoleContext): { atMs: number; lsns: number[] }[] {
  const messages: { atMs: number; lsns: number[] }[] = [];
  const sub = client.transport.subscribe(client.subjects.log, (m) => {
    messages.push({ atMs: performance.now(), lsns: ((decodeEnvelope(m.data).entries as { lsn: string }[]) ?? []).map((e) => Number(e.lsn)) });
  });
  stops.push(() => sub.unsubscribe());
  return messages;
}

const BATCH_MS = 1000;

test('async: the first entry after a quiet spell goes at once; entries within streamBatchMs are acknowledged, then go together', async () => {
  const dir = tempDir('flotilla-durable-ack-');
  const cluster = 'durable-c';
  const lctx = await context('leader', dir, cluster, BATCH_MS);
  const client = await context('client', dir, cluster);
  await startLeader(lctx, 'async');
  const stream = recordStream(client);
  await (client.transport as NatsTransport).nc.flush();
  expect((await write(client, 'CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)', 'ddl')).reply.type).toBe('write-reply');
  // The first entry after a quiet spell: published at once, not after the interval.
  const first = await waitFor(() => stream[0], { what: 'the DDL published', timeoutMs: BATCH_MS / 2, intervalMs: 5 });
  const ddlLsn = lctx.store.lastLsn;
  expect(first.lsns).toEqual([ddlLsn]);

  // Two more writes right away: acknowledged (durable on the leader) while their entries are held.
  const [a, b] = await Promise.all([write(client, "INSERT INTO t VALUES (1, 'a')", 'w1'), write(client, "INSERT INTO t VALUES (2, 'b')", 'w2')]);
  expect(a.reply.type).toBe('write-reply');
  expect(b.reply.type).toBe('write-reply');
  const held = [Number(a.reply.lsn), Number(b.reply.lsn)].sort((x, y) => x - y);
  expect(held).toEqual([ddlLsn + 1, ddlLsn + 2]);
  const batch = await waitFor(() => stream.find((m) => m.lsns.includes(held[0])), { what: 'the held entries published', timeoutMs: 3 * BATCH_MS, intervalMs: 5 });
  // One message with both, in order, not before the interval since the last one was up.
  expect(batch.lsns).toEqual(held);
  expect(stream).toHaveLength(2);
  expect(batch.atMs - first.atMs).toBeGreaterThanOrEqual(BATCH_MS - 5);
  expect(Math.max(a.atMs, b.atMs)).toBeLessThan(batch.atMs);
});

test('an entry a follower must flush is published at once, with everything held before it', async () => {
  const dir = tempDir('flotilla-durable-ack-');
  const cluster = 'durable-d';
  const lctx = await context('leader', dir, cluster, BATCH_MS);
  const fctx = await context('follower', dir, cluster);
  const client = await context('client', dir, cluster);
  const leader = await startLeader(lctx, 'async');
  await startFollower(fctx);
  const stream = recordStream(client);
  await (client.transport as NatsTransport).nc.flush();
  expect((await write(client, 'CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)', 'ddl')).reply.type).toBe('write-reply');
  await waitFor(() => leader.followers.get('follower')?.applied === lctx.store.lastLsn || undefined, { what: 'follower live at the DDL' });

  // Two plain async writes (the second is held: a group was committed just before it), then one
  // asking for a follower's flush: it goes at once with the held one, long before the interval.
  await write(client, "INSERT INTO t VALUES (0, 'z')", 'w0');
  const plain = await write(client, "INSERT INTO t VALUES (1, 'a')", 'w1');
  const asked = await waitFor(() => write(client, "INSERT INTO t VALUES (2, 'b')", 'w2', { replicas: 2 }), { what: 'the replicas:2 write acknowledged', timeoutMs: BATCH_MS / 2, intervalMs: 5 });
  expect(asked.reply).toMatchObject({ type: 'write-reply', lsn: String(Number(plain.reply.lsn) + 1) });
  const carrier = stream.find((m) => m.lsns.includes(Number(asked.reply.lsn)));
  expect(carrier?.lsns.slice(-2)).toEqual([Number(plain.reply.lsn), Number(asked.reply.lsn)]);
  expect(fctx.store.lastLsn).toBeGreaterThanOrEqual(Number(asked.reply.lsn));
});

test("a write from the replica's own API (submitWrite) waits for the same fdatasync; once the role stopped it is answered NOT_LEADER at once", async () => {
  const dir = tempDir('flotilla-durable-ack-');
  const cluster = 'durable-e';
  const lctx = await context('leader', dir, cluster);
  const leader = await startLeader(lctx, 'async');
  const local = (sql: string, key: string) => leader.submitWrite(encode({ type: 'write', v: PROTOCOL_VERSION, statements: [{ sql }], idempotencyKey: key })).then(decodeEnvelope);
  expect(await local('CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)', 'ddl')).toMatchObject({ type: 'write-reply' });

  const gate = new Gate(lctx.store);
  const before = lctx.store.lastLsn;
  let repliedAtMs = 0;
  const pending = local("INSERT INTO t VALUES (1, 'a')", 'l1').then((r) => ((repliedAtMs = performance.now()), r));
  await waitFor(() => lctx.store.lastLsn === before + 1 && gate.pending > 0, { what: 'committed with the flush held' });
  expect(repliedAtMs).toBe(0);
  gate.release();
  expect(await pending).toMatchObject({ type: 'write-reply', lsn: String(before + 1) });
  expect(repliedAtMs).toBeGreaterThanOrEqual(gate.openedAtMs);

  leader.stop();
  const late = await local("INSERT INTO t VALUES (2, 'b')", 'l2');
  expect(late).toMatchObject({ type: 'error', error: { code: 'NOT_LEADER' } });
  expect(lctx.store.lastLsn).toBe(before + 1);
});

test('a rewound follower reports the new leader\'s entries flushed only after a flush of their own', async () => {
  const dir = tempDir('flotilla-durable-ack-');
  const cluster = 'durable-rewind';
  // History: both have LSN 1..2 of epoch 1; the follower also has 3..4 of epoch 1, which the new
  // leader (epoch 2) never had; the new leader wrote its own 3..4 in epoch 2.
  const lctx = await context('leader', dir, cluster);
  const fctx = await context('follower', dir, cluster);
  const old = Store.open(path.join(dir, 'old-leader.sqlite'));
  stores.push(old);
  old.startCapture();
  old.beginEpoch(1);
  const run = (s: Store, epoch: number, sql: string) => s.executeBatch([{ statements: [{ sql }] }], epoch).flatMap((o) => (o.ok && o.entry ? [o.entry] : []));
  const common = [...run(old, 1, 'CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)'), ...run(old, 1, "INSERT INTO t VALUES (1, 'both')")];
  lctx.store.applyEntries(common);
  fctx.store.applyEntries(common);
  fctx.store.applyEntries([...run(old, 1, "INSERT INTO t VALUES (2, 'lost')"), ...run(old, 1, "INSERT INTO t VALUES (3, 'lost')")]);
  fctx.store.syncWal(); // the diverged tail is flushed: the follower starts with flushed = 4
  lctx.store.setDurability('deferred');
  lctx.store.startCapture();
  lctx.store.beginEpoch(2);
  run(lctx.store, 2, "INSERT INTO t VALUES (20, 'new')");
  run(lctx.store, 2, "INSERT INTO t VALUES (30, 'new')");
  lctx.store.syncWal();
  expect([lctx.store.lastLsn, fctx.store.lastLsn]).toEqual([4, 4]);

  const sync = new SyncTracker({ mode: 'semi-sync', syncFollowers: 1, syncTimeoutMs: 30_000, syncPolicy: 'block' }, lctx.log);
  const leader = new LeaderRole(lctx, 2, () => true, sync);
  leader.start();
  stops.push(() => leader.stop());
  await (lctx.transport as NatsTransport).nc.flush();
  const acks: { flushed: number; applied: number }[] = [];
  const sub = lctx.transport.subscribe(lctx.subjects.ack, (m) => {
    const a = decodeEnvelope(m.data);
    acks.push({ flushed: Number(a.flushed), applied: Number(a.applied) });
  });
  stops.push(() => sub.unsubscribe());
  await (lctx.transport as NatsTransport).nc.flush();

  const gate = new Gate(fctx.store);
  const follower = new FollowerRole(fctx, 2, 'leader', () => undefined, () => true);
  follower.start();
  stops.push(() => follower.stop());
  // Rewound to 2, then the leader's 3..4 applied; its flush is held.
  await waitFor(() => fctx.store.lastLsn === 4 && fctx.store.tableChecksums().t.sha256 === lctx.store.tableChecksums().t.sha256, { what: 'rewound and caught up' });
  follower.sendAck(); // what a heartbeat would report meanwhile
  await waitFor(() => acks.some((a) => a.applied === 4), { what: 'an ack of the caught-up position' });
  expect(acks.filter((a) => a.flushed > 2)).toEqual([]);
  await waitFor(() => gate.pending > 0, { what: 'a flush of the new entries asked for' });
  gate.release();
  await waitFor(() => acks.some((a) => a.flushed === 4), { what: 'flushed 4 once the flush ran' });
});

test('a mode change is fenced like a write, and answered only once a sync follower flushed it', async () => {
  const dir = tempDir('flotilla-durable-ack-');
  const cluster = 'durable-mode';
  const lctx = await context('leader', dir, cluster);
  const fctx = await context('follower', dir, cluster);
  const client = await context('client', dir, cluster);
  let leaseValid = true;
  const leader = await startLeader(lctx, 'async', () => leaseValid);
  await startFollower(fctx);
  expect((await write(client, 'CREATE TABLE t(k INTEGER PRIMARY KEY)', 'ddl')).reply.type).toBe('write-reply');
  await waitFor(() => leader.followers.get('follower')?.flushed === lctx.store.lastLsn, { what: 'follower flushed the table' });
  const semi = { mode: 'semi-sync' as const, syncFollowers: 1, syncPolicy: 'block' as const, syncTimeoutMs: 30_000 };

  // No lease: refused, nothing recorded.
  leaseValid = false;
  const before = lctx.store.lastLsn;
  expect(() => leader.setSettings(semi)).toThrow(expect.objectContaining({ code: ErrorCode.LEASE_EXPIRED }));
  expect(lctx.store.lastLsn).toBe(before);
  leaseValid = true;

  // To semi-sync: in force at once, confirmed only after the follower's flush of the entry.
  const gate = new Gate(fctx.store);
  const entry = leader.setSettings(semi);
  let confirmed = false;
  const confirming = leader.settingsDurable(entry.lsn, 30_000).then(() => (confirmed = true));
  await waitFor(() => fctx.store.lastLsn === entry.lsn && gate.pending > 0, { what: 'setting applied on the follower, its flush held' });
  expect(confirmed).toBe(false);
  gate.release();
  await confirming;
  expect(fctx.store.readSettings()).toEqual(semi);

  // Not confirmed in time (the follower's flush held again): an error that says the setting is in
  // force but not replicated.
  const held = new Gate(fctx.store);
  leader.stop();
  const l2 = new LeaderRole(lctx, 1, () => true, new SyncTracker(semi, lctx.log));
  l2.start();
  stops.push(() => l2.stop());
  const e2 = l2.setSettings({ ...semi, syncTimeoutMs: 20_000 });
  await expect(l2.settingsDurable(e2.lsn, 200)).rejects.toMatchObject({ code: ErrorCode.NOT_ENOUGH_REPLICAS, message: expect.stringContaining('in force on the leader') });
  held.release();
});

test('a follower serves no read until its leader has checked its log; a new leader on the stream means a new check first', async () => {
  const dir = tempDir('flotilla-durable-ack-');
  const cluster = 'durable-checked';
  const lctx = await context('leader', dir, cluster);
  const fctx = await context('follower', dir, cluster);
  const client = await context('client', dir, cluster);
  const acks: number[] = [];
  const ackSub = client.transport.subscribe(client.subjects.ack, (m) => acks.push(Number(decodeEnvelope(m.data).flushed)));
  stops.push(() => ackSub.unsubscribe());
  await (client.transport as NatsTransport).nc.flush();
  // The follower starts before any leader answers: its log is unchecked (ReplicaNode refuses reads),
  // and it reports no position (its tail may be an old leader's, at LSNs the leader will reuse).
  const follower = new FollowerRole(fctx, 1, 'leader', () => undefined, () => true);
  follower.start();
  stops.push(() => follower.stop());
  expect(follower.logChecked).toBe(false);
  follower.sendAck(); // what a heartbeat does
  await (fctx.transport as NatsTransport).nc.flush();
  await (client.transport as NatsTransport).nc.flush();
  expect(acks).toEqual([]);
  const leader = await startLeader(lctx, 'async');
  await waitFor(() => follower.logChecked && follower.state === 'live', { what: 'log checked by the leader, live' });
  expect((await write(client, 'CREATE TABLE t(k INTEGER PRIMARY KEY)', 'ddl')).reply.type).toBe('write-reply');
  await waitFor(() => fctx.store.lastLsn === lctx.store.lastLsn, { what: 'table applied' });
  const at = fctx.store.lastLsn;

  // Entries of epoch 2 from a leader the lease has not named yet, at the very next LSN: held until
  // that leader confirms (by a catch-up) that the follower's log is a prefix of its own.
  const other = Store.open(path.join(dir, 'leader2.sqlite'));
  stores.push(other);
  other.applyEntries(lctx.store.readLogAfter(0, 1 << 20));
  other.startCapture();
  other.beginEpoch(2);
  const [o] = other.executeBatch([{ statements: [{ sql: 'INSERT INTO t VALUES (2)' }] }], 2);
  expect(o.ok && o.entry?.lsn).toBe(at + 1);
  const entry = (o as { entry: LogEntry }).entry;
  const toWire = (e: LogEntry) => ({ lsn: String(e.lsn), epoch: e.epoch, ts: e.ts, crc: e.crc, payload: e.payload });
  leader.stop(); // the old leader is gone; leader2 answers no catch-up yet
  client.transport.publish(client.subjects.log, encode({ type: 'entries', v: PROTOCOL_VERSION, epoch: 2, leader: 'leader2', entries: [toWire(entry)] }));
  await waitFor(() => (fctx.log as MemoryLogger).lines.some((l) => l.msg === 'following newer epoch seen on the stream'), { what: 'the new epoch seen' });
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  expect(follower.logChecked).toBe(false);
  expect(fctx.store.lastLsn).toBe(at); // not applied on the stream's word alone
  // leader2 answers catch-ups now: checked, and its entry applied.
  const sub = client.transport.subscribe(client.subjects.catchup('leader2'), (m) => {
    m.respond?.(encode({ type: 'catchup-reply', v: PROTOCOL_VERSION, epoch: 2, leader: 'leader2', leaderLsn: String(entry.lsn), entries: [toWire(entry)], epochs: other.epochHistory() }));
  });
  stops.push(() => sub.unsubscribe());
  await waitFor(() => follower.logChecked && fctx.store.lastLsn === at + 1, { what: 'checked by leader2, its entry applied' });
});

test('a write whose wait for its sync follower outlasts the lease is not acknowledged', async () => {
  const dir = tempDir('flotilla-durable-ack-');
  const cluster = 'durable-lease-wait';
  const lctx = await context('leader', dir, cluster);
  const fctx = await context('follower', dir, cluster);
  const client = await context('client', dir, cluster);
  let leaseValid = true;
  const leader = await startLeader(lctx, 'semi-sync', () => leaseValid);
  await startFollower(fctx);
  expect((await write(client, 'CREATE TABLE t(k INTEGER PRIMARY KEY)', 'ddl')).reply.type).toBe('write-reply');
  await waitFor(() => leader.sync.members.includes('follower'), { what: 'follower in the sync set' });
  const gate = new Gate(fctx.store);
  const lsn = lctx.store.lastLsn + 1;
  const pending = write(client, 'INSERT INTO t VALUES (1)', 'w1');
  await waitFor(() => fctx.store.lastLsn === lsn && gate.pending > 0 && leader.flushedLsn >= lsn, { what: 'waiting for the follower flush' });
  leaseValid = false; // the lease runs out while the write waits
  gate.release();
  const { reply } = await pending;
  expect(reply).toMatchObject({ type: 'error', error: { code: ErrorCode.LEASE_EXPIRED } });
});

test('entries that fit one by one but not together once escaped go in several messages, live and by catch-up', async () => {
  const dir = tempDir('flotilla-durable-ack-');
  const cluster = 'durable-split';
  const lctx = await context('leader', dir, cluster, 1000);
  const client = await context('client', dir, cluster);
  await startLeader(lctx, 'async');
  expect((await write(client, 'CREATE TABLE q(k INTEGER PRIMARY KEY, v TEXT)', 'ddl')).reply.type).toBe('write-reply');
  const messages = recordStream(client);
  await (client.transport as NatsTransport).nc.flush();
  // 150,000 quotes each: 300 KB in the log, 600 KB escaped; two held together would be 1.2 MB.
  const big = (k: number) => `INSERT INTO q VALUES (${k}, replace(hex(zeroblob(75000)), '0', '"'))`;
  const [a, b] = await Promise.all([write(client, big(1), 'b1'), write(client, big(2), 'b2')]);
  expect([a.reply.type, b.reply.type]).toEqual(['write-reply', 'write-reply']);
  const lsns = [Number(a.reply.lsn), Number(b.reply.lsn)];
  await waitFor(() => lsns.every((l) => messages.some((m) => m.lsns.includes(l))), { what: 'both entries published' });
  expect(messages.some((m) => lsns.every((l) => m.lsns.includes(l)))).toBe(false);
  // A follower that joins later gets them by catch-up, fewer per reply.
  const fctx = await context('follower', dir, cluster);
  await startFollower(fctx);
  await waitFor(() => fctx.store.lastLsn === lctx.store.lastLsn, { what: 'follower caught up' });
  expect(fctx.store.tableChecksums()).toEqual(lctx.store.tableChecksums());
});

test('a deposed leader still subscribed to writes (its lease no longer valid) answers none: the real leader\'s answer is the one the client gets', async () => {
  const dir = tempDir('flotilla-durable-ack-');
  const cluster = 'durable-deposed';
  const oldCtx = await context('old', dir, cluster);
  const newCtx = await context('new', dir, cluster);
  const client = await context('client', dir, cluster);
  let oldValid = true;
  await startLeader(oldCtx, 'async', () => oldValid);
  // The old leader is paused or cut off past its lease; meanwhile another node leads, and both are
  // subscribed to `write` when it comes back (before it learns of the newer epoch).
  oldValid = false;
  await startLeader(newCtx, 'async');
  const oldBefore = oldCtx.store.lastLsn;
  expect((await write(client, 'CREATE TABLE t(k INTEGER PRIMARY KEY)', 'ddl')).reply.type).toBe('write-reply');
  const replies: Record<string, unknown>[] = [];
  for (let k = 0; k < 20; k++) {
    // Unkeyed: a definite refusal from the old leader would be retried by a client, and applied twice.
    const data = await client.transport.request(client.subjects.write, encode({ type: 'write', v: PROTOCOL_VERSION, statements: [{ sql: 'INSERT INTO t VALUES (?)', params: [k] }] }), 10_000);
    replies.push(decodeEnvelope(data));
  }
  expect(replies.filter((r) => r.type !== 'write-reply')).toEqual([]);
  expect(newCtx.store.query('SELECT count(*) AS n FROM t').rows).toEqual([{ n: 20 }]);
  expect(oldCtx.store.lastLsn).toBe(oldBefore); // it ran none of them
  // With nobody else leading, a leader whose lease is not valid is not there for writes at all:
  // the sender hears "no responders" (never delivered, safe to retry), not a refusal.
  await waitFor(() => (oldCtx.log as MemoryLogger).lines.some((l) => l.msg === 'lease not valid: taking no writes from NATS until it is renewed'), { what: 'the old leader off the write subject' });
});
