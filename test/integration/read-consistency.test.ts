/**
 * Read consistency through the gateway on a real async cluster: read-your-writes never returns data
 * older than the client's write, bounded reads never come from a replica lagging more than asked,
 * and a client sending back the LSN it last saw never reads backwards (monotonic reads).
 */
import { LocalCluster } from '@flotilla/local-cluster';
import type { NatsConnection } from 'nats';
import { decodeEnvelope, encode, PROTOCOL_VERSION, subjectsFor } from '@flotilla/protocol';
import { httpJson, startLocalCluster, stopAll, waitFor } from '@flotilla/testing';
import { natsClient, statusOf } from './support';

jest.setTimeout(180_000);

let cluster: LocalCluster;
let leader: string;
let nc: NatsConnection;

const exec = (sql: string, params?: unknown[]) => httpJson('POST', `${cluster.gatewayUrl}/v1/execute`, { statements: [{ sql, params }] });
const query = (body: Record<string, unknown>) => httpJson('POST', `${cluster.gatewayUrl}/v1/query`, body);

beforeAll(async () => {
  ({ cluster } = await startLocalCluster({ replicas: 3, monitor: false, replicaEnv: { FLOTILLA_MODE: 'async' } }));
  await cluster.waitUntilReady();
  nc = await natsClient(cluster.natsUrl);
  leader = await waitFor(async () => {
    const r = await httpJson('GET', `${cluster.gatewayUrl}/v1/cluster`);
    return r.body?.leader && r.body.nodes.filter((n: { healthy: boolean }) => n.healthy).length === 3 ? (r.body.leader as string) : null;
  }, { what: 'leader and 3 healthy nodes' });
  expect((await exec('CREATE TABLE t(k INTEGER PRIMARY KEY, v INTEGER NOT NULL)')).status).toBe(200);
});

afterAll(async () => {
  await nc?.close();
  await stopAll();
});

/** Follower reads that arrived before their minLsn was applied, summed over `nodes`. */
async function waitedForLsn(nodes: string[]): Promise<number> {
  const counts = await Promise.all(nodes.map(async (n) => (await statusOf(nc, n)).counters.readsWaitedForLsn ?? 0));
  return counts.reduce((a, b) => a + b, 0);
}

test('read-your-writes: 1,000 write-then-read pairs routed to followers never return data older than the write, while one follower keeps falling behind', async () => {
  const servedBy = new Map<string, number>();
  const stale: unknown[] = [];
  // Both followers paused 80 ms of every 200 (too short to look unhealthy): a read sent meanwhile
  // reaches a follower that has not applied the write yet, so minLsn must make it wait (or fall
  // back to the leader). Reads that had to wait are counted by the replicas.
  const followers = cluster.replicaNames.filter((n) => n !== leader);
  const waitedBefore = await waitedForLsn(followers);
  let stop = false;
  const staller = (async () => {
    while (!stop) {
      for (const f of followers) cluster.pause(f);
      await new Promise((r) => setTimeout(r, 80));
      for (const f of followers) cluster.resume(f);
      await new Promise((r) => setTimeout(r, 120));
    }
  })();
  try {
    await pairs();
  } finally {
    stop = true;
    await staller;
    for (const f of followers) cluster.resume(f);
  }
  expect(stale).toEqual([]);
  const byFollowers = [...servedBy].filter(([n]) => n !== leader).reduce((a, [, c]) => a + c, 0);
  const waited = (await waitedForLsn(followers)) - waitedBefore;
  // eslint-disable-next-line no-console
  console.log('read-your-writes served by', Object.fromEntries(servedBy), `; ${waited} follower reads waited for their minLsn`);
  expect(byFollowers).toBeGreaterThan(500);
  expect(waited).toBeGreaterThan(0); // the path under test was taken, not only reads that were current anyway

  async function pairs(): Promise<void> {
    for (let i = 0; i < 1000; i++) {
      const w = await exec('INSERT INTO t(k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v', [i % 50, i]);
      expect(w.status).toBe(200);
      const r = await query({ sql: 'SELECT v FROM t WHERE k = ?', params: [i % 50], consistency: 'read-your-writes', minLsn: w.body.lsn });
      expect(r.status).toBe(200);
      servedBy.set(r.body.servedBy, (servedBy.get(r.body.servedBy) ?? 0) + 1);
      if (r.body.rows[0]?.v !== i || BigInt(r.body.lsn) < BigInt(w.body.lsn)) stale.push({ i, write: w.body, read: r.body });
    }
  }
});

test('bounded: no read comes from a replica lagging more than maxLagMs, even while a follower stalls', async () => {
  const maxLagMs = 200;
  const follower = cluster.replicaNames.find((n) => n !== leader)!;
  // Acknowledged writes with the time they were acknowledged (same clock as the reads).
  const acks: { at: number; lsn: bigint }[] = [];
  let stop = false;
  const writer = (async () => {
    for (let i = 0; !stop; i++) {
      const w = await exec('INSERT INTO t(k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v', [1000 + (i % 10), i]);
      if (w.status === 200) acks.push({ at: performance.now(), lsn: BigInt(w.body.lsn) });
    }
  })();
  // A follower that keeps stalling: paused for 600 ms out of every 800.
  const staller = (async () => {
    while (!stop) {
      cluster.pause(follower);
      await new Promise((r) => setTimeout(r, 600));
      cluster.resume(follower);
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  const violations: unknown[] = [];
  const served = new Map<string, number>();
  const deadline = performance.now() + 8000;
  while (performance.now() < deadline) {
    const start = performance.now();
    const r = await query({ sql: 'SELECT count(*) AS n FROM t', consistency: 'bounded', maxLagMs });
    if (r.status !== 200) {
      violations.push({ status: r.status, body: r.body });
      continue;
    }
    served.set(r.body.servedBy, (served.get(r.body.servedBy) ?? 0) + 1);
    // Everything acknowledged more than maxLagMs before the read began must be visible.
    const mustSee = acks.filter((a) => a.at < start - maxLagMs).reduce((m, a) => (a.lsn > m ? a.lsn : m), 0n);
    if (BigInt(r.body.lsn) < mustSee) violations.push({ servedBy: r.body.servedBy, lsn: r.body.lsn, mustSee: String(mustSee) });
  }
  stop = true;
  await Promise.all([writer, staller]);
  cluster.resume(follower);
  // eslint-disable-next-line no-console
  console.log('bounded reads served by', Object.fromEntries(served));
  expect(violations).toEqual([]);
  const total = [...served.values()].reduce((a, b) => a + b, 0);
  expect(total).toBeGreaterThan(50);
  // Followers must take part, or the bound would be met by sending everything to the leader.
  expect([...served].filter(([n]) => n !== leader).reduce((a, [, c]) => a + c, 0)).toBeGreaterThan(total / 10);
});

test('monotonic reads: sending back the LSN last seen never reads an older state', async () => {
  let seen = '0';
  let count = 0;
  for (let i = 0; i < 300; i++) {
    if (i % 3 === 0) expect((await exec('INSERT INTO t(k, v) VALUES (?, 0)', [5000 + i])).status).toBe(200);
    const r = await query({ sql: 'SELECT count(*) AS n FROM t', consistency: 'read-your-writes', minLsn: seen });
    expect(r.status).toBe(200);
    expect(BigInt(r.body.lsn)).toBeGreaterThanOrEqual(BigInt(seen));
    expect(r.body.rows[0].n).toBeGreaterThanOrEqual(count);
    seen = r.body.lsn;
    count = r.body.rows[0].n;
  }
});

test('strong with minLsn: the leader checks it too, and says so when the LSN is beyond its log', async () => {
  const w = await exec('INSERT INTO t(k, v) VALUES (?, 1)', [9000]);
  expect(w.status).toBe(200);
  const ok = await query({ sql: 'SELECT v FROM t WHERE k = 9000', consistency: 'strong', minLsn: w.body.lsn });
  expect(ok.status).toBe(200);
  expect(ok.body.servedBy).toBe(leader);
  expect(BigInt(ok.body.lsn)).toBeGreaterThanOrEqual(BigInt(w.body.lsn));
  // An LSN this cluster never reached (as after an async failover lost it): refused, not served older.
  const ahead = await query({ sql: 'SELECT 1 AS x', consistency: 'strong', minLsn: '999999999' });
  expect(ahead.status).toBe(503);
  expect(ahead.body.error).toMatchObject({ code: 'TIMEOUT', message: expect.stringContaining('before minLsn 999999999') });
});

test('minEpoch with minLsn: a history whose LSN is of another epoch is refused (the write was lost in a failover), on followers and on the leader', async () => {
  const w = await exec('INSERT INTO t(k, v) VALUES (?, 1)', [9100]);
  expect(w.status).toBe(200);
  const { lsn, epoch } = w.body as { lsn: string; epoch: number };
  for (const consistency of ['read-your-writes', 'strong']) {
    const ok = await query({ sql: 'SELECT v FROM t WHERE k = 9100', consistency, minLsn: lsn, minEpoch: epoch });
    expect(ok.status).toBe(200);
    expect(ok.body.rows).toEqual([{ v: 1 }]);
    // (epoch, LSN) names one transaction: the same LSN of another epoch is a write this history never had.
    const other = await query({ sql: 'SELECT v FROM t WHERE k = 9100', consistency, minLsn: lsn, minEpoch: epoch + 1 });
    expect(other.status).toBe(409);
    expect(other.body.error).toMatchObject({ code: 'STALE_EPOCH', message: expect.stringContaining(`the write at LSN ${lsn} of epoch ${epoch + 1} is not in this cluster's history`) });
  }
  // Served by a follower too: every node checks its own history.
  const followers = cluster.replicaNames.filter((n) => n !== leader);
  const servedBy = new Set<string>();
  for (let i = 0; i < 20 && followers.some((f) => !servedBy.has(f)); i++) {
    const r = await query({ sql: 'SELECT 1 AS x', minLsn: lsn, minEpoch: epoch + 1 });
    expect(r.status).toBe(409);
    const ok = await query({ sql: 'SELECT 1 AS x', minLsn: lsn, minEpoch: epoch });
    expect(ok.status).toBe(200);
    servedBy.add(ok.body.servedBy);
  }
  expect(followers.some((f) => servedBy.has(f))).toBe(true);
  // Asked directly: a follower whose entry there is of an OLDER epoch may just be on a deposed
  // leader's branch, not the cluster's: it says it is not current (the gateway then asks the
  // leader, as above), never that the write was lost. A NEWER epoch there means lost.
  const ask = async (node: string, minEpoch: number) =>
    decodeEnvelope((await nc.request(subjectsFor('flotilla').read(node), encode({ type: 'query', v: PROTOCOL_VERSION, sql: 'SELECT 1 AS x', minLsn: lsn, minEpoch }), { timeout: 5000 })).data);
  await waitFor(async () => BigInt((await statusOf(nc, followers[0])).heartbeat.appliedLsn) >= BigInt(lsn) || null, { what: `${followers[0]} at LSN ${lsn}` });
  expect(await ask(followers[0], epoch + 1)).toMatchObject({ type: 'error', error: { code: 'TIMEOUT', message: expect.stringContaining('has not caught up with that history') } });
  if (epoch > 0) expect(await ask(followers[0], epoch - 1)).toMatchObject({ type: 'error', error: { code: 'STALE_EPOCH' } });
  expect(await ask(followers[0], epoch)).toMatchObject({ type: 'query-reply', rows: [{ x: 1 }] });
  const alone = await query({ sql: 'SELECT 1 AS x', minEpoch: epoch });
  expect(alone.status).toBe(400);
  expect(alone.body.error.message).toContain('minEpoch goes with minLsn');
});
