/**
 * A new replica joins a cluster holding over 200 MB while writes go on: it seeds itself from an
 * online snapshot, then catches up; writes are never blocked for long while the snapshot is made
 * and streamed.
 */
import type { NatsConnection } from 'nats';
import { LocalCluster } from '@flotilla/local-cluster';
import { httpJson, startLocalCluster, stopAll, waitFor } from '@flotilla/testing';
import { fileChecksums, natsClient, startWriterThread, statusOf } from './support';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { leftoverFiles, removeFilePaced, replacedFileFor, seedFileFor, servedSnapshotsDirFor } from '@flotilla/storage';

jest.setTimeout(600_000);

/** What the cluster must hold before the new replica joins. */
const DATA_BYTES_MIN = 200 * 1024 * 1024;
/** Raw bytes per write request (hex in the log: 2× this, under the 900 KiB entry limit). */
const BLOB_BYTES = 256 * 1024;
const WRITE_BLOCKED_MS_MAX = 100;
/**
 * The join is measured again (the newcomer's database deleted, so it seeds anew) when a write in
 * its window was slower than the bound, at most this many times in all; one clean join passes.
 * Why: this machine's disk now and then holds an fdatasync for 100-300 ms, most often in the
 * seconds after a few hundred MB were written, whoever wrote them (a bare 4 KiB append + fdatasync
 * every 2 ms: worst 22 ms in five 10 s runs on a quiet disk; next to two 200 MB writers, worst
 * 21-303 ms per 7 s run, over 100 ms in 4 of 8; once 272 ms with nothing else writing, seconds
 * after them). One such stall in a join's 3 s failed this test in 4 of the 14 runs of
 * 2026-11-27/28 whose output was kept (a write of 126-312 ms; the two with leader logs show one
 * leader fdatasync of 117 and 208 ms). A snapshot that blocks writes blocks them in every join:
 * then every attempt fails, and so does the test.
 */
const JOIN_ATTEMPTS_MAX = 3;

let cluster: LocalCluster;
let nc: NatsConnection;

beforeAll(async () => {
  ({ cluster } = await startLocalCluster({ replicas: 3, monitor: false }));
  await cluster.waitUntilReady();
  nc = await natsClient(cluster.natsUrl);
});

afterAll(async () => {
  await nc?.close();
  await stopAll();
});

test('a 4th replica joins a 200 MB cluster under writes: snapshot + catch-up, identical content, writes never blocked > 100 ms', async () => {
  const exec = (sql: string, params?: unknown[]) => httpJson('POST', `${cluster.gatewayUrl}/v1/execute`, { statements: [{ sql, params }] });
  expect((await exec('CREATE TABLE blobs(id INTEGER PRIMARY KEY, data BLOB NOT NULL)')).status).toBe(200);
  expect((await exec('CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT)')).status).toBe(200);
  const requests = Math.ceil(DATA_BYTES_MIN / BLOB_BYTES) + 5;
  let sent = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (sent < requests) {
        sent++;
        const r = await exec('INSERT INTO blobs(data) VALUES (randomblob(?))', [BLOB_BYTES]);
        if (r.status !== 200) throw new Error(`load: ${r.status} ${JSON.stringify(r.body)}`);
      }
    }),
  );
  const leader = (await httpJson('GET', `${cluster.gatewayUrl}/v1/cluster`)).body.leader as string;
  expect(fs.statSync(cluster.replicaDbFile(leader)).size).toBeGreaterThanOrEqual(DATA_BYTES_MIN);

  // One client writes one row at a time, as an application would, for the whole join.
  const writer = startWriterThread(cluster.gatewayUrl, 'kv');
  await waitFor(() => writer.acked >= 50, { what: 'writes flowing', timeoutMs: 20_000 });
  let newcomer = '';
  const worstPerJoin: number[] = [];
  // The leader's own event loop, from its /metrics: prom-client reports the largest delay since the
  // previous scrape (and resets it), so one scrape at a join's start and one at its end give the
  // longest the leader could not run a write during that join, disk stalls aside (its fdatasyncs
  // run on the thread pool). Unlike the client's latency, that must hold in every join.
  const leaderLoopMaxMs = async () => {
    const text = await (await fetch(`${cluster.httpUrl(leader)}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    const m = /^nodejs_eventloop_lag_max_seconds(?:\{[^}]*\})? (\S+)$/m.exec(text);
    if (!m) throw new Error('no nodejs_eventloop_lag_max_seconds in the leader\'s /metrics');
    return Number(m[1]) * 1000;
  };
  const loopMaxPerJoin: number[] = [];
  for (let attempt = 1; attempt <= JOIN_ATTEMPTS_MAX; attempt++) {
    if (attempt > 1) {
      // Again from nothing: the same replica, its database gone, seeds itself anew.
      await cluster.stopProcess(newcomer);
      const db = cluster.replicaDbFile(newcomer);
      for (const f of [db, `${db}-wal`, `${db}-shm`]) await removeFilePaced(f);
      await cluster.startProcess(newcomer);
    }
    await leaderLoopMaxMs(); // resets the leader's maximum
    const joinStart = Date.now();
    if (attempt === 1) newcomer = await cluster.addReplica();
    await waitFor(
      async () => {
        const s = await statusOf(nc, newcomer).catch(() => null);
        return s && s.counters.snapshotsInstalled === 1 && s.heartbeat.role === 'follower' ? s : null;
      },
      { what: `${newcomer} seeded from a snapshot`, timeoutMs: 300_000, intervalMs: 250 },
    );
    const joinEnd = Date.now();
    loopMaxPerJoin.push(await leaderLoopMaxMs());
    const during = writer.acked;
    await waitFor(() => writer.acked >= during + 50, { what: 'writes after the join', timeoutMs: 20_000 });
    const window = writer.samples().filter(([at]) => at >= joinStart && at <= joinEnd);
    const worstMs = Math.max(...window.map(([, ms]) => ms));
    const spikes = window.filter(([, ms]) => ms > WRITE_BLOCKED_MS_MAX).map(([at, ms]) => `${Math.round(at - joinStart)}: ${Math.round(ms)}`).join(', ');
    worstPerJoin.push(worstMs);
    // eslint-disable-next-line no-console
    console.log(`join ${attempt} took ${joinEnd - joinStart} ms from ${new Date(joinStart).toISOString()}; ${window.length} writes meanwhile, worst ${worstMs.toFixed(1)} ms; slower than ${WRITE_BLOCKED_MS_MAX} ms (ms after join start: ms): ${spikes || 'none'}; the leader's event loop delayed at most ${loopMaxPerJoin[loopMaxPerJoin.length - 1].toFixed(1)} ms`);
    expect(window.length).toBeGreaterThan(10);
    if (worstMs <= WRITE_BLOCKED_MS_MAX) break;
  }
  const result = await writer.stop();
  expect(result.failed).toBe(0);
  // Some join never had a write slower than the bound (all of them are printed above)...
  expect(Math.min(...worstPerJoin)).toBeLessThanOrEqual(WRITE_BLOCKED_MS_MAX);
  // ...and in every join the leader itself was never held longer than that.
  for (const ms of loopMaxPerJoin) expect(ms).toBeLessThanOrEqual(WRITE_BLOCKED_MS_MAX);

  const target = Number((await statusOf(nc, leader)).heartbeat.lsn);
  await waitFor(async () => Number((await statusOf(nc, newcomer)).heartbeat.lsn) === target, { what: 'newcomer caught up', timeoutMs: 60_000 });
  await waitFor(
    async () => (await Promise.all(cluster.replicaNames.map((n) => statusOf(nc, n)))).every((s) => Number(s.heartbeat.lsn) === target),
    { what: 'all replicas caught up', timeoutMs: 60_000 },
  );
  const sums = cluster.replicaNames.map((n) => fileChecksums(cluster.replicaDbFile(n)));
  expect(sums).toHaveLength(4);
  for (const s of sums) expect(s.tables).toEqual(sums[0].tables);

  // The snapshot the leader served and the database the snapshot replaced are removed (a step at a
  // time, in the background), and nothing else is left in either data directory.
  for (const node of [leader, newcomer]) {
    await waitFor(() => leftoverFiles(cluster.replicaDbFile(node)).length === 0, { what: `no leftover files of ${node}`, timeoutMs: 30_000 });
  }
  newcomerName = newcomer;
});

let newcomerName = '';

test('a replica removes at start what an interrupted seed, snapshot or removal left in its data directory', async () => {
  expect(newcomerName).not.toBe('');
  const db = cluster.replicaDbFile(newcomerName);
  await cluster.stopProcess(newcomerName);
  fs.mkdirSync(servedSnapshotsDirFor(db), { recursive: true });
  const planted = [seedFileFor(db), replacedFileFor(db), `${db}.snapshot.tmp.removing-0a1b2c`, path.join(servedSnapshotsDirFor(db), 'crashed.sqlite')];
  for (const f of planted) fs.writeFileSync(f, Buffer.alloc(20 * 1024 * 1024, 1));
  expect(leftoverFiles(db).sort()).toEqual(planted.sort());
  const before = fileChecksums(db);
  await cluster.startProcess(newcomerName);
  await waitFor(() => leftoverFiles(db).length === 0, { what: 'leftover files removed', timeoutMs: 30_000 });
  await waitFor(async () => (await statusOf(nc, newcomerName).catch(() => null))?.heartbeat.role === 'follower', { what: `${newcomerName} following again`, timeoutMs: 30_000 });
  // Its database is the one it had: it did not seed again.
  expect((await statusOf(nc, newcomerName)).counters.snapshotsInstalled ?? 0).toBe(0);
  expect(fileChecksums(db).tables).toEqual(before.tables);
});
