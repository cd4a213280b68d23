/**
 * The cluster foundation end to end: real nats-server, real replica and gateway processes started
 * by the local-cluster supervisor, real SQLite files compared byte-for-byte in content.
 */
import type { NatsConnection } from 'nats';
import { LocalCluster } from '@flotilla/local-cluster';
import { httpJson, logLines, startLocalCluster, stopAll, waitFor } from '@flotilla/testing';
import { fileChecksums, natsClient, startLoad, statusOf } from './support';

jest.setTimeout(240_000);

async function execute(cluster: LocalCluster, sql: string, params?: unknown[]) {
  const r = await httpJson('POST', `${cluster.gatewayUrl}/v1/execute`, { statements: [{ sql, params }] });
  if (r.status !== 200) throw new Error(`execute ${sql}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body as { lsn: string; epoch: number };
}

async function leaderOf(cluster: LocalCluster): Promise<string> {
  return waitFor(
    async () => {
      const r = await httpJson('GET', `${cluster.gatewayUrl}/v1/cluster`);
      return r.status === 200 && r.body.leader ? (r.body.leader as string) : null;
    },
    { what: 'a leader in /v1/cluster', timeoutMs: 30_000 },
  );
}

/** Waits until every replica has applied the leader's last LSN, then returns their file checksums. */
async function converged(cluster: LocalCluster, nc: NatsConnection, names = cluster.replicaNames) {
  const leader = await leaderOf(cluster);
  await waitFor(
    async () => {
      const target = Number((await statusOf(nc, leader)).heartbeat.lsn);
      const lsns = await Promise.all(names.map(async (n) => Number((await statusOf(nc, n).catch(() => null))?.heartbeat.lsn ?? -1)));
      return lsns.every((l) => l === target) ? target : null;
    },
    { what: 'every replica at the leader LSN', timeoutMs: 60_000, intervalMs: 200 },
  );
  return names.map((n) => ({ name: n, ...fileChecksums(cluster.replicaDbFile(n)) }));
}

describe('a 3-replica cluster', () => {
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

  test('10,000 rows written through the gateway are on every replica, with identical checksums', async () => {
    await execute(cluster, 'CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL, tag BLOB)');
    const perRequest = 10;
    let next = 0;
    const client = async () => {
      while (next < 10_000) {
        const first = next;
        next += perRequest;
        const values = Array.from({ length: perRequest }, () => '(?, ?, ?, randomblob(8))').join(', ');
        const params = Array.from({ length: perRequest }, (_, i) => [first + i, `item-${first + i}`, (first + i) / 7]).flat();
        await execute(cluster, `INSERT INTO items(id, name, price, tag) VALUES ${values}`, params);
      }
    };
    await Promise.all(Array.from({ length: 16 }, client));
    const sums = await converged(cluster, nc);
    expect(sums[0].tables.items.rows).toBe(10_000);
    for (const s of sums) expect(s.tables).toEqual(sums[0].tables);
    expect(new Set(sums.map((s) => s.lsn)).size).toBe(1);
  });

  test('a follower killed with -9 during writes catches up from its own position (no snapshot) and converges', async () => {
    await execute(cluster, 'CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT)');
    const leader = await leaderOf(cluster);
    const victim = cluster.replicaNames.find((n) => n !== leader)!;
    const load = startLoad(cluster.gatewayUrl, 'kv', { clients: 4, maxWrites: 100_000 });
    await waitFor(() => load.acked.length >= 300, { what: '300 acknowledged writes', timeoutMs: 30_000 });
    const oldPid = cluster.pid(victim);
    const before = (await statusOf(nc, victim)).heartbeat.lsn;
    cluster.killReplica(victim, 'SIGKILL');
    // The supervisor restarts it, as Kubernetes restarts a pod.
    await waitFor(() => cluster.pid(victim) !== undefined && cluster.pid(victim) !== oldPid, { what: `${victim} restarted`, timeoutMs: 20_000 });
    const status = await waitFor(async () => {
      const s = await statusOf(nc, victim).catch(() => null);
      return s && s.heartbeat.role === 'follower' && (s.counters.catchups ?? 0) >= 1 ? s : null;
    }, { what: `${victim} caught up once`, timeoutMs: 30_000 });
    const afterRestart = load.acked.length;
    await waitFor(() => load.acked.length >= afterRestart + 300, { what: '300 more writes after the restart', timeoutMs: 30_000 });
    await load.stop();
    const sums = await converged(cluster, nc);
    for (const s of sums) expect(s.tables).toEqual(sums[0].tables);
    const final = await statusOf(nc, victim);
    // Proof that it recovered from its own log position: it never installed a snapshot (the
    // counter is this incarnation's; its log file spans every incarnation, so it is read too), and
    // its catch-up after the restart started at or past where it was before the kill.
    expect(final.counters.snapshotsInstalled ?? 0).toBe(0);
    expect(status.counters.catchupEntries ?? 0).toBeGreaterThan(0);
    expect(Number(before)).toBeGreaterThan(0);
    const lines = logLines(cluster, victim);
    expect(lines.filter((l) => /^snapshot (seeding started|offered|seeding finished)$/.test(l.msg))).toEqual([]);
    const restarts = lines.filter((l) => l.msg === 'replica started');
    expect(restarts).toHaveLength(2);
    const resumedAt = Number(restarts[1].lsn);
    expect(resumedAt).toBeGreaterThanOrEqual(Number(before));
    const catchupAfterRestart = lines.slice(lines.indexOf(restarts[1])).find((l) => l.msg === 'catch-up started');
    expect(Number(catchupAfterRestart?.from)).toBe(resumedAt);
    // Every acknowledged write is on the restarted follower.
    const rows = sums.find((s) => s.name === victim)!.tables.kv.rows;
    expect(rows).toBeGreaterThanOrEqual(load.acked.length);
  });
});

describe('log retention', () => {
  let cluster: LocalCluster;
  let nc: NatsConnection;

  beforeAll(async () => {
    ({ cluster } = await startLocalCluster({
      replicas: 2,
      monitor: false,
      replicaEnv: { FLOTILLA_LOG_RETENTION_ENTRIES: '10', FLOTILLA_LOG_RETENTION_BYTES: '20000' },
    }));
    await cluster.waitUntilReady();
    nc = await natsClient(cluster.natsUrl);
  });

  afterAll(async () => {
    await nc?.close();
    await stopAll();
  });

  test('a follower stopped long enough for the leader to drop the log it needs is re-seeded on return', async () => {
    await execute(cluster, 'CREATE TABLE r(k INTEGER PRIMARY KEY, v TEXT)');
    const leader = await leaderOf(cluster);
    const follower = cluster.replicaNames.find((n) => n !== leader)!;
    await converged(cluster, nc);
    await cluster.stopProcess(follower);
    const position = fileChecksums(cluster.replicaDbFile(follower)).lsn;
    for (let i = 0; i < 400; i++) await execute(cluster, 'INSERT INTO r(k, v) VALUES (?, ?)', [i, 'x'.repeat(100)]);
    // The leader keeps at most 20 kB of log: what the follower needs is gone.
    await waitFor(async () => Number((await statusOf(nc, leader)).log.oldestLsn) > position + 1, {
      what: 'the leader to drop entries the stopped follower needs',
      timeoutMs: 30_000,
    });
    await cluster.startProcess(follower);
    const sums = await converged(cluster, nc);
    for (const s of sums) expect(s.tables).toEqual(sums[0].tables);
    expect(sums[0].tables.r.rows).toBe(400);
    const s = await statusOf(nc, follower);
    expect(s.counters.snapshotsInstalled).toBe(1);
  });
});

describe('log retention across a failover', () => {
  let cluster: LocalCluster;
  let nc: NatsConnection;

  beforeAll(async () => {
    // The last 10 entries are kept for their own sake; anything older only while some node needs it.
    ({ cluster } = await startLocalCluster({ replicas: 3, monitor: true, replicaEnv: { FLOTILLA_LOG_RETENTION_ENTRIES: '10' } }));
    await cluster.waitUntilReady();
    nc = await natsClient(cluster.natsUrl);
  });

  afterAll(async () => {
    await nc?.close();
    await stopAll();
  });

  test('a follower that was down through a failover (and a restart of the new leader) catches up from the new leader\'s log, which kept what it needs', async () => {
    await execute(cluster, 'CREATE TABLE f(k INTEGER PRIMARY KEY, v TEXT)');
    for (let i = 0; i < 20; i++) await execute(cluster, 'INSERT INTO f(k, v) VALUES (?, ?)', [i, 'x']);
    const oldLeader = await leaderOf(cluster);
    const [stopped, heir] = cluster.replicaNames.filter((n) => n !== oldLeader);
    await converged(cluster, nc);
    // Every node has heard the follower's position in its heartbeats (so has the gateway, from the same ones).
    const target = Number((await statusOf(nc, oldLeader)).heartbeat.lsn);
    await waitFor(
      async () => {
        const view = (await httpJson('GET', `${cluster.gatewayUrl}/v1/cluster`)).body as { nodes: { name: string; lsn: string }[] };
        return Number(view.nodes.find((n) => n.name === stopped)?.lsn) === target;
      },
      { what: `${stopped}'s position in the heartbeats`, timeoutMs: 10_000 },
    );
    await cluster.stopProcess(stopped);
    const position = fileChecksums(cluster.replicaDbFile(stopped)).lsn;
    for (let i = 20; i < 70; i++) await execute(cluster, 'INSERT INTO f(k, v) VALUES (?, ?)', [i, 'x']);
    // The heir restarts meanwhile: what it knew of the stopped follower comes back from its store.
    await cluster.stopProcess(heir);
    await cluster.startProcess(heir);
    for (let i = 70; i < 120; i++) await execute(cluster, 'INSERT INTO f(k, v) VALUES (?, ?)', [i, 'x']);
    await converged(cluster, nc, [oldLeader, heir]);

    // The leader dies and stays down; the other follower, which never led, takes over.
    cluster.signal(oldLeader, 'SIGKILL');
    await cluster.stopProcess(oldLeader);
    await waitFor(async () => ((await leaderOf(cluster)) === heir ? heir : null), { what: `${heir} leading`, timeoutMs: 30_000 });
    for (let i = 120; i < 220; ) {
      const r = await httpJson('POST', `${cluster.gatewayUrl}/v1/execute`, { statements: [{ sql: 'INSERT INTO f(k, v) VALUES (?, ?)', params: [i, 'x'] }], idempotencyKey: `f-${i}` });
      if (r.status === 200) i++;
      else await new Promise((resolve) => setTimeout(resolve, 50));
    }
    // It trims its log as a leader (the entries before the stopped follower's position go)...
    await waitFor(async () => Number((await statusOf(nc, heir)).log.oldestLsn) > 1, { what: `${heir} trimming its log`, timeoutMs: 30_000 });
    // ...but keeps every entry the stopped follower needs, though it never had it as a follower.
    expect(Number((await statusOf(nc, heir)).log.oldestLsn)).toBeLessThanOrEqual(position + 1);

    await cluster.startProcess(stopped);
    const sums = await converged(cluster, nc, [stopped, heir]);
    expect(sums[0].tables).toEqual(sums[1].tables);
    expect(sums[0].tables.f.rows).toBe(220);
    expect((await statusOf(nc, stopped)).counters.snapshotsInstalled ?? 0).toBe(0);
    const lines = logLines(cluster, stopped);
    const restarted = lines.map((l) => l.msg).lastIndexOf('replica started');
    const caughtUp = lines.slice(restarted).find((l) => l.msg === 'catch-up started');
    expect(Number(caughtUp?.from)).toBe(position);
  });
});
