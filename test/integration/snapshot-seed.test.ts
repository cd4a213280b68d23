/**
 * A new replica joins a cluster holding over 200 MB while writes go on: it seeds itself from an
 * online snapshot, then catches up; writes go on while the leader copies its database. How long a
 * write may take during a join (issue 2: at most 100 ms) is measured by `npm run bench`.
 */
import type { NatsConnection } from 'nats';
import { LocalCluster } from '@flotilla/local-cluster';
import { eventLoopLagMaxMs, httpJson, logLines, startLocalCluster, stopAll, waitFor } from '@flotilla/testing';
import { fileChecksums, natsClient, startWriterThread, statusOf } from './support';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { leftoverFiles, replacedFileFor, seedFileFor, servedSnapshotsDirFor } from '@flotilla/storage';

jest.setTimeout(600_000);

/** What the cluster must hold before the new replica joins. */
const DATA_BYTES_MIN = 200 * 1024 * 1024;
/** Raw bytes per write request (hex in the log: 2× this, under the 900 KiB entry limit). */
const BLOB_BYTES = 256 * 1024;
/**
 * Writes go on through the leader's copy of the database: at least this many start and end inside
 * it, and no stretch of it longer than half of it passes without a write acknowledged. A snapshot
 * that held writes while it copied fails both; one that held them for most of the copy (the leader's
 * event loop blocked for 3 s of a 3 s copy, tried by hand) lets a few through at the end and fails
 * the second. One client writing a row at a time does ~100-200 writes a second here, and the copy
 * of 200 MB takes 0.8-1.5 s (docs/benchmarks.md); the disk's worst stall seen is about 300 ms.
 *
 * The bound (no write slower than 100 ms during the join) is a speed target, and it is
 * measured by `npm run bench` (snapshot section: write latency of one client before and during a
 * join), not asserted here: on this 2-core machine with five processes and the disk shared, a
 * single fdatasync held 100-300 ms by the disk now and then fails it whatever Flotilla does
 * (4 of the 14 runs of 2026-11-27/28 whose output was kept, and all 3 joins of one CI run).
 * The worst write and the leader's event-loop delay are printed for every run.
 */
const WRITES_DURING_COPY_MIN = 10;

let cluster: LocalCluster;
let nc: NatsConnection;
/** The writer thread, ended by afterAll if the test failed before it stopped it. */
let liveWriter: ReturnType<typeof startWriterThread> | undefined;

beforeAll(async () => {
  ({ cluster } = await startLocalCluster({ replicas: 3, monitor: false }));
  await cluster.waitUntilReady();
  nc = await natsClient(cluster.natsUrl);
});

afterAll(async () => {
  await liveWriter?.terminate();
  await nc?.close();
  await stopAll();
});

test('a 4th replica joins a 200 MB cluster under writes: snapshot + catch-up, identical content, writes go on through the copy', async () => {
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
  liveWriter = writer;
  await waitFor(() => writer.acked >= 50, { what: 'writes flowing', timeoutMs: 20_000 });
  // The leader's own event loop, from its /metrics: prom-client reports the largest delay since the
  // previous scrape (and resets it), so one scrape at the join's start and one at its end give the
  // longest the leader could not run a write during the join (printed; the bench judges it).
  const leaderLoopMaxMs = () => eventLoopLagMaxMs(cluster.httpUrl(leader));
  await leaderLoopMaxMs(); // resets the leader's maximum
  const joinStart = Date.now();
  const newcomer = await cluster.addReplica();
  await waitFor(
    async () => {
      const s = await statusOf(nc, newcomer).catch(() => null);
      return s && s.counters.snapshotsInstalled === 1 && s.heartbeat.role === 'follower' ? s : null;
    },
    { what: `${newcomer} seeded from a snapshot`, timeoutMs: 300_000, intervalMs: 250 },
  );
  const joinEnd = Date.now();
  const loopMaxMs = await leaderLoopMaxMs();
  const during = writer.acked;
  await waitFor(() => writer.acked >= during + 50, { what: 'writes after the join', timeoutMs: 20_000 });

  // The leader's copy for the newcomer, as its log tells it (wall clock, as the writer's samples).
  const leaderLog = logLines(cluster, leader);
  const at = (msg: string) => {
    const line = leaderLog.find((l) => l.msg === msg && l.for === newcomer);
    if (!line) throw new Error(`no '${msg}' for ${newcomer} in ${leader}'s log`);
    return Date.parse(String(line.time));
  };
  const copyFrom = at('snapshot started');
  const copyTo = at('snapshot complete');
  expect(copyFrom).toBeGreaterThanOrEqual(joinStart);
  expect(copyTo).toBeGreaterThan(copyFrom);
  const samples = writer.samples();
  const inCopy = samples.filter(([t0, ms]) => t0 >= copyFrom && t0 + ms <= copyTo);
  // Every acknowledgement inside the copy, of writes that started before it too.
  const ackTimes = samples.map(([t0, ms]) => t0 + ms).filter((t) => t > copyFrom && t <= copyTo);
  const acks = [copyFrom, ...ackTimes.sort((a, b) => a - b), copyTo];
  const longestWithoutAck = Math.max(...acks.slice(1).map((t, i) => t - acks[i]));
  const inJoin = samples.filter(([t0]) => t0 >= joinStart && t0 <= joinEnd).map(([, ms]) => ms);
  const spikes = samples.filter(([t0, ms]) => t0 >= joinStart && t0 <= joinEnd && ms > 100).map(([t0, ms]) => `${Math.round(t0 - joinStart)}: ${Math.round(ms)}`);
  // eslint-disable-next-line no-console
  console.log(
    `join took ${joinEnd - joinStart} ms; the leader copied from ${copyFrom - joinStart} to ${copyTo - joinStart} ms, and ${inCopy.length} writes ` +
      `started and ended inside the copy, at most ${Math.round(longestWithoutAck)} ms apart; ${inJoin.length} writes in the join, worst ${Math.max(...inJoin).toFixed(1)} ms; slower than 100 ms ` +
      `(ms after join start: ms): ${spikes.join(', ') || 'none'}; the leader's event loop delayed at most ${loopMaxMs.toFixed(1)} ms`,
  );
  // Writes went on while the leader copied its database.
  expect(inCopy.length).toBeGreaterThanOrEqual(WRITES_DURING_COPY_MIN);
  expect(longestWithoutAck).toBeLessThanOrEqual((copyTo - copyFrom) / 2);
  const result = await writer.stop();
  expect(result.failed).toBe(0);
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
