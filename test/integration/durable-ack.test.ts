/**
 * Acknowledgement waits for fdatasync, which runs off the event loop: the leader role and a follower
 * role in this process over a real nats-server and real SQLite files, each store's async WAL flush
 * held behind a gate the test opens. The leader publishes while its own flush runs; the client
 * reply comes only after the leader's flush AND (semi-sync) the sync follower's flush returned.
 */
import * as path from 'node:path';
import { loadConfig } from '@flotilla/config';
import { MemoryLogger, systemClock } from '@flotilla/logging';
import { decodeEnvelope, encode, PROTOCOL_VERSION, subjectsFor } from '@flotilla/protocol';
import { Counters, FollowerRole, LeaderRole, RoleContext, SyncTracker } from '@flotilla/replication';
import { Store } from '@flotilla/storage';
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

async function context(node: string, dir: string, cluster: string): Promise<RoleContext> {
  const store = Store.open(path.join(dir, `${node}.sqlite`));
  stores.push(store);
  const transport = await NatsTransport.connect({ servers: nats.url, name: node });
  transports.push(transport);
  return {
    node, store, transport, subjects: subjectsFor(cluster), clock: systemClock,
    log: new MemoryLogger({ node }), config: loadConfig({ cluster, node }, {}), counters: new Counters(),
    fatal: (err) => { throw err; },
  };
}

async function startLeader(ctx: RoleContext, mode: 'async' | 'semi-sync'): Promise<LeaderRole> {
  ctx.store.setDurability('deferred');
  ctx.store.startCapture();
  ctx.store.beginEpoch(1);
  ctx.store.syncWal();
  const sync = new SyncTracker({ mode, syncFollowers: 1, syncTimeoutMs: 30_000, syncPolicy: 'block' }, ctx.log);
  const leader = new LeaderRole(ctx, 1, () => true, sync);
  leader.start();
  stops.push(() => leader.stop());
  // Subscriptions are registered at the server once the connection is flushed.
  await (ctx.transport as NatsTransport).nc.flush();
  return leader;
}

/** Sends a write; resolves with the reply and the time it arrived. */
async function write(ctx: RoleContext, sql: string, key: string): Promise<{ reply: Record<string, unknown>; atMs: number }> {
  const data = await ctx.transport.request(ctx.subjects.write, encode({ type: 'write', v: PROTOCOL_VERSION, statements: [{ sql }], idempotencyKey: key }), 30_000);
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
  const follower = new FollowerRole(fctx, 1, 'leader', () => undefined, () => true);
  follower.start();
  stops.push(() => follower.stop());
  await (fctx.transport as NatsTransport).nc.flush();
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
