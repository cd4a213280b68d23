/**
 * Synchronous, semi-synchronous and degraded replication under real faults: kill -9 of the leader
 * right after acknowledgements, SIGSTOP of the sync follower, and of every follower.
 */
import type { NatsConnection } from 'nats';
import { LocalCluster } from '@flotilla/local-cluster';
import { httpJson, startLocalCluster, stopAll, waitFor } from '@flotilla/testing';
import Database from 'better-sqlite3';
import { fileChecksums, natsClient, startLoad, statusOf } from '../integration/support';

jest.setTimeout(180_000);

const SYNC_TIMEOUT_MS = 1000;

async function clusterView(cluster: LocalCluster) {
  return (await httpJson('GET', `${cluster.gatewayUrl}/v1/cluster`)).body as {
    leader: string;
    mode: string | null;
    nodes: { name: string; role: string; sync: boolean; healthy: boolean; problem?: string; lsn: string }[];
  };
}

async function start(mode: string, extra: Record<string, string> = {}) {
  const { cluster } = await startLocalCluster({
    replicas: 3,
    monitor: false,
    restart: false,
    replicaEnv: { FLOTILLA_MODE: mode, FLOTILLA_SYNC_TIMEOUT_MS: String(SYNC_TIMEOUT_MS), ...extra },
  });
  await cluster.waitUntilReady();
  const nc = await natsClient(cluster.natsUrl);
  const view = await waitFor(async () => {
    const v = await clusterView(cluster);
    return v.leader && v.nodes.filter((n) => n.healthy).length === 3 && (mode === 'async' || v.nodes.some((n) => n.sync)) ? v : null;
  }, { what: 'a leader, 3 healthy nodes and a sync follower', timeoutMs: 30_000 });
  return { cluster, nc, leader: view.leader, followers: cluster.replicaNames.filter((n) => n !== view.leader) };
}

function keysIn(dbFile: string, table: string): Set<number> {
  const db = new Database(dbFile, { readonly: true, fileMustExist: true });
  try {
    return new Set(db.prepare(`SELECT k FROM ${table}`).pluck().all() as number[]);
  } finally {
    db.close();
  }
}

let nc: NatsConnection | undefined;
afterEach(async () => {
  await nc?.close();
  nc = undefined;
  await stopAll();
});

test('semi-sync: every acknowledged write is on a follower at the moment of the ack (kill -9 of the leader right after acks)', async () => {
  const c = await start('semi-sync');
  nc = c.nc;
  expect((await httpJson('POST', `${c.cluster.gatewayUrl}/v1/execute`, { statements: [{ sql: 'CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)' }] })).status).toBe(200);
  const load = startLoad(c.cluster.gatewayUrl, 't', { clients: 16, maxWrites: 1_000_000 });
  await waitFor(() => load.acked.length >= 2000, { what: '2000 acknowledged writes', timeoutMs: 60_000 });
  // Every replica in the same instant (no restart, no monitor): no follower applies anything more
  // from what NATS still held, so its file shows what it had when the leader acknowledged.
  for (const node of [c.leader, ...c.followers]) c.cluster.killReplica(node, 'SIGKILL');
  await load.stop();
  const onLeader = keysIn(c.cluster.replicaDbFile(c.leader), 't');
  const onFollowers = c.followers.map((f) => keysIn(c.cluster.replicaDbFile(f), 't'));
  const missing = load.acked.filter((a) => !onFollowers.some((s) => s.has(a.key)));
  expect(load.acked.length).toBeGreaterThanOrEqual(2000);
  expect(load.acked.filter((a) => !onLeader.has(a.key))).toEqual([]);
  expect(missing).toEqual([]);
});

test('SIGSTOP of the sync follower: within syncTimeoutMs + 1 s the other follower is sync and writes succeed; after SIGCONT it catches up', async () => {
  const c = await start('semi-sync');
  nc = c.nc;
  expect((await httpJson('POST', `${c.cluster.gatewayUrl}/v1/execute`, { statements: [{ sql: 'CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)' }] })).status).toBe(200);
  const syncNode = (await clusterView(c.cluster)).nodes.find((n) => n.sync)!.name;
  const other = c.followers.find((f) => f !== syncNode)!;
  const load = startLoad(c.cluster.gatewayUrl, 't', { clients: 4, maxWrites: 1_000_000 });
  await waitFor(() => load.acked.length >= 200, { what: 'writes flowing' });
  c.cluster.pause(syncNode);
  const pausedAt = performance.now();
  const ackedAtPause = load.acked.length;
  const switched = await waitFor(async () => {
    const v = await clusterView(c.cluster);
    return v.nodes.find((n) => n.name === other)?.sync && !v.nodes.find((n) => n.name === syncNode)?.sync ? performance.now() : null;
  }, { what: `${other} to become sync`, timeoutMs: SYNC_TIMEOUT_MS + 5000, intervalMs: 50 });
  await waitFor(() => load.acked.length >= ackedAtPause + 50, { what: 'writes succeeding again', timeoutMs: SYNC_TIMEOUT_MS + 5000, intervalMs: 20 });
  const writesBackAt = performance.now();
  expect(switched - pausedAt).toBeLessThanOrEqual(SYNC_TIMEOUT_MS + 1000);
  expect(writesBackAt - pausedAt).toBeLessThanOrEqual(SYNC_TIMEOUT_MS + 1000);
  c.cluster.resume(syncNode);
  await waitFor(() => load.acked.length >= ackedAtPause + 300, { what: 'more writes' });
  await load.stop();
  const leaderLsn = Number((await statusOf(c.nc, c.leader)).heartbeat.lsn);
  await waitFor(async () => Number((await statusOf(c.nc, syncNode)).heartbeat.lsn) >= leaderLsn, { what: `${syncNode} caught up`, timeoutMs: 30_000 });
  expect(load.failures.filter((f) => f.status !== 503)).toEqual([]);
  // Caught up in content, not only in position: every replica holds the same rows.
  await waitFor(async () => (await Promise.all(c.followers.map((f) => statusOf(c.nc, f)))).every((st) => Number(st.heartbeat.lsn) >= leaderLsn), { what: 'both followers at the leader LSN' });
  const sums = c.cluster.replicaNames.map((n) => fileChecksums(c.cluster.replicaDbFile(n)).tables);
  for (const t of sums) expect(t).toEqual(sums[0]);
});

test('block: with no follower reachable writes fail with 503 after the timeout, nothing lost or half-applied', async () => {
  const c = await start('semi-sync', { FLOTILLA_SYNC_POLICY: 'block' });
  nc = c.nc;
  const exec = (statements: { sql: string; params?: unknown[] }[]) => httpJson('POST', `${c.cluster.gatewayUrl}/v1/execute`, { statements });
  expect((await exec([{ sql: 'CREATE TABLE a(k INTEGER PRIMARY KEY)' }, { sql: 'CREATE TABLE b(k INTEGER PRIMARY KEY)' }])).status).toBe(200);
  const pair = (k: number) => exec([{ sql: 'INSERT INTO a(k) VALUES (?)', params: [k] }, { sql: 'INSERT INTO b(k) VALUES (?)', params: [k] }]);
  for (let k = 0; k < 20; k++) expect((await pair(k)).status).toBe(200);
  for (const f of c.followers) c.cluster.pause(f);
  const results: { k: number; status: number; ms: number; retryAfter?: string; code?: string }[] = [];
  await Promise.all(
    Array.from({ length: 5 }, async (_, i) => {
      const k = 100 + i;
      const t0 = performance.now();
      const r = await pair(k);
      results.push({ k, status: r.status, ms: performance.now() - t0, retryAfter: r.headers['retry-after'] as string | undefined, code: r.body?.error?.code });
    }),
  );
  for (const r of results) {
    expect(r).toMatchObject({ status: 503, code: 'NOT_ENOUGH_REPLICAS', retryAfter: expect.any(String) });
    expect(r.ms).toBeGreaterThanOrEqual(SYNC_TIMEOUT_MS - 50);
    expect(r.ms).toBeLessThan(SYNC_TIMEOUT_MS + 2000); // after the timeout, not whenever
  }
  for (const f of c.followers) c.cluster.resume(f);
  for (let k = 200; k < 210; k++) expect((await waitFor(async () => ((await pair(k)).status === 200 ? true : null), { what: `write ${k} after resume` }))).toBe(true);
  const leaderLsn = Number((await statusOf(c.nc, c.leader)).heartbeat.lsn);
  await waitFor(async () => (await Promise.all(c.followers.map((f) => statusOf(c.nc, f)))).every((s) => Number(s.heartbeat.lsn) >= leaderLsn), { what: 'followers caught up' });
  for (const name of c.cluster.replicaNames) {
    const a = keysIn(c.cluster.replicaDbFile(name), 'a');
    const b = keysIn(c.cluster.replicaDbFile(name), 'b');
    expect([...a].sort()).toEqual([...b].sort()); // every transaction whole or absent
    for (let k = 0; k < 20; k++) expect(a.has(k)).toBe(true); // acknowledged before: never lost
    for (let k = 200; k < 210; k++) expect(a.has(k)).toBe(true);
  }
  // And the replicas agree with each other, the refused writes 100..104 included (all there, or nowhere).
  const sums = c.cluster.replicaNames.map((n) => fileChecksums(c.cluster.replicaDbFile(n)).tables);
  for (const t of sums) expect(t).toEqual(sums[0]);
});

test('degrade (set at run time): writes continue with every follower stopped, and the degraded state is visible', async () => {
  const c = await start('semi-sync');
  nc = c.nc;
  // The admin endpoint (what `flotilla mode --sync-policy degrade` calls); bad values are refused.
  expect((await httpJson('POST', `${c.cluster.gatewayUrl}/v1/admin/mode`, { syncPolicy: 'hope' })).status).toBe(400);
  const setMode = await httpJson('POST', `${c.cluster.gatewayUrl}/v1/admin/mode`, { syncPolicy: 'degrade' });
  expect(setMode.status).toBe(200);
  expect(setMode.body).toMatchObject({ mode: 'semi-sync', syncPolicy: 'degrade', syncFollowers: 1, lsn: expect.any(String) });
  const exec = (sql: string, params?: unknown[]) => httpJson('POST', `${c.cluster.gatewayUrl}/v1/execute`, { statements: [{ sql, params }] });
  expect((await exec('CREATE TABLE t(k INTEGER PRIMARY KEY)')).status).toBe(200);
  for (const f of c.followers) c.cluster.pause(f);
  for (let k = 0; k < 20; k++) expect((await exec('INSERT INTO t(k) VALUES (?)', [k])).status).toBe(200);
  const leaderNode = (await clusterView(c.cluster)).nodes.find((n) => n.name === c.leader)!;
  expect(leaderNode.problem).toMatch(/degraded/);
  const metrics = await fetch(c.cluster.httpUrl(c.leader) + '/metrics').then((r) => r.text());
  expect(metrics).toMatch(/flotilla_replica_degraded 1/);
  for (const f of c.followers) c.cluster.resume(f);
  await waitFor(async () => ((await clusterView(c.cluster)).nodes.find((n) => n.name === c.leader)!.problem ? null : true), {
    what: 'degraded state cleared once a follower is back',
    timeoutMs: 15_000,
  });
  // The run-time setting is replicated: every replica stores it.
  for (const name of c.cluster.replicaNames) {
    const db = new Database(c.cluster.replicaDbFile(name), { readonly: true });
    expect(JSON.parse(db.prepare("SELECT value FROM _flotilla_meta WHERE key = 'settings'").pluck().get() as string)).toMatchObject({ syncPolicy: 'degrade' });
    db.close();
  }
  // mode and syncFollowers at run time too: the sync set follows, and writes go on.
  const two = await httpJson('POST', `${c.cluster.gatewayUrl}/v1/admin/mode`, { syncFollowers: 2 });
  expect(two.status).toBe(200);
  expect(two.body).toMatchObject({ mode: 'semi-sync', syncFollowers: 2 });
  await waitFor(async () => ((await clusterView(c.cluster)).nodes.filter((n) => n.sync).length === 2 ? true : null), { what: 'two sync followers' });
  expect((await exec('INSERT INTO t(k) VALUES (?)', [100])).status).toBe(200);
  const toAsync = await httpJson('POST', `${c.cluster.gatewayUrl}/v1/admin/mode`, { mode: 'async' });
  expect(toAsync.status).toBe(200);
  expect(toAsync.body).toMatchObject({ mode: 'async' });
  await waitFor(async () => {
    const v = await clusterView(c.cluster);
    return v.mode === 'async' && v.nodes.every((n) => !n.sync) ? true : null;
  }, { what: '/v1/cluster in async mode, nobody sync' });
  // In async mode a stopped follower delays nothing.
  for (const f of c.followers) c.cluster.pause(f);
  expect((await exec('INSERT INTO t(k) VALUES (?)', [101])).status).toBe(200);
  for (const f of c.followers) c.cluster.resume(f);
});

test('per-request durability asks for more than the cluster default, never less', async () => {
  const c = await start('async');
  nc = c.nc;
  const exec = (k: number, durability?: unknown) =>
    httpJson('POST', `${c.cluster.gatewayUrl}/v1/execute`, { statements: [{ sql: 'INSERT INTO t(k) VALUES (?)', params: [k] }], ...(durability ? { durability } : {}) });
  expect((await httpJson('POST', `${c.cluster.gatewayUrl}/v1/execute`, { statements: [{ sql: 'CREATE TABLE t(k INTEGER PRIMARY KEY)' }] })).status).toBe(200);
  // Both followers up: a write asking for 3 copies is acknowledged once both followers flushed it.
  const all = await exec(1, { replicas: 3 });
  expect(all.status).toBe(200);
  for (const f of c.followers) {
    const db = new Database(c.cluster.replicaDbFile(f), { readonly: true });
    expect(db.prepare('SELECT count(*) FROM t WHERE k = 1').pluck().get()).toBe(1);
    db.close();
  }
  c.cluster.pause(c.followers[0]);
  // The cluster default (async) and 'leader' do not wait for anyone...
  expect((await exec(2)).status).toBe(200);
  expect((await exec(3, 'leader')).status).toBe(200);
  // ...'sync' needs one follower copy: the other follower gives it (it has it at the ack)...
  expect((await exec(4, 'sync')).status).toBe(200);
  const other = new Database(c.cluster.replicaDbFile(c.followers[1]), { readonly: true });
  expect(other.prepare('SELECT count(*) FROM t WHERE k = 4').pluck().get()).toBe(1);
  other.close();
  // ...but three copies cannot be had with a follower paused: refused after syncTimeoutMs, not acknowledged.
  const t0 = performance.now();
  const three = await exec(5, { replicas: 3 });
  expect(three.status).toBe(503);
  expect(three.body.error.code).toBe('NOT_ENOUGH_REPLICAS');
  expect(performance.now() - t0).toBeGreaterThanOrEqual(SYNC_TIMEOUT_MS - 50);
  c.cluster.resume(c.followers[0]);
});

test('per-request durability never asks for less: in semi-sync, a write asking for "leader" still waits for a sync follower', async () => {
  const c = await start('semi-sync');
  nc = c.nc;
  const exec = (k: number, durability?: unknown) =>
    httpJson('POST', `${c.cluster.gatewayUrl}/v1/execute`, { statements: [{ sql: 'INSERT INTO t(k) VALUES (?)', params: [k] }], ...(durability ? { durability } : {}) });
  expect((await httpJson('POST', `${c.cluster.gatewayUrl}/v1/execute`, { statements: [{ sql: 'CREATE TABLE t(k INTEGER PRIMARY KEY)' }] })).status).toBe(200);
  expect((await exec(1, 'leader')).status).toBe(200);
  for (const f of c.followers) c.cluster.pause(f);
  try {
    const t0 = performance.now();
    const r = await exec(2, 'leader');
    expect({ status: r.status, code: r.body?.error?.code }).toEqual({ status: 503, code: 'NOT_ENOUGH_REPLICAS' });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(SYNC_TIMEOUT_MS - 50);
  } finally {
    for (const f of c.followers) c.cluster.resume(f);
  }
});
