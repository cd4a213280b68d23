/**
 * The public REST API served by every replica (apiPort): on the leader a write runs in the leader's
 * own process, with no NATS round trip; on a follower it goes to the leader. Real apps, real
 * nats-server, real SQLite files. The same bad inputs as through the gateway get the same answers,
 * and nothing of them is applied.
 */
import { LocalCluster } from '@flotilla/local-cluster';
import { httpJson, readTableChecksums, startLocalCluster, stopAll, waitFor } from '@flotilla/testing';

jest.setTimeout(180_000);

let cluster: LocalCluster;
let leader: string;
let follower: string;

const api = (node: string) => cluster.apiUrl(node);
const exec = (node: string, statements: { sql: string; params?: unknown[] }[], extra: Record<string, unknown> = {}) =>
  httpJson('POST', `${api(node)}/v1/execute`, { statements, ...extra });

async function postRaw(url: string, text: string) {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: text, signal: AbortSignal.timeout(10_000) });
  return { status: res.status, body: JSON.parse(await res.text()) as { error?: { code: string; message: string } } };
}

/** The leader, once the gateway and every replica's API see it and 3 healthy nodes. */
async function leaderNow(): Promise<string> {
  return waitFor(async () => {
    const leaders = new Set<string>();
    for (const base of [cluster.gatewayUrl, ...cluster.replicaNames.map(api)]) {
      const r = await httpJson('GET', `${base}/v1/cluster`).catch(() => null);
      if (!r?.body?.leader || r.body.nodes.filter((n: { healthy: boolean }) => n.healthy).length !== 3) return null;
      leaders.add(r.body.leader as string);
    }
    return leaders.size === 1 ? [...leaders][0] : null;
  }, { what: 'one leader and 3 healthy nodes, seen by the gateway and every replica API' });
}

/** Per-table checksums of every replica once all have applied the leader's last LSN. */
async function converged(): Promise<Record<string, unknown>> {
  return waitFor(() => {
    const sums = cluster.replicaNames.map((n) => JSON.stringify(readTableChecksums(cluster.replicaDbFile(n))));
    return sums.every((s) => s === sums[0]) ? JSON.parse(sums[0]) : null;
  }, { what: 'identical content on every replica', timeoutMs: 30_000 });
}

beforeAll(async () => {
  ({ cluster } = await startLocalCluster({ replicas: 3, replicaEnv: { FLOTILLA_MODE: 'async' } }));
  await cluster.waitUntilReady();
  leader = await leaderNow();
  follower = cluster.replicaNames.find((n) => n !== leader)!;
  expect((await exec(leader, [{ sql: 'CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT NOT NULL)' }])).status).toBe(200);
});

afterAll(() => stopAll());

test("the leader's API commits writes in its own process: they succeed while nats-server is frozen", async () => {
  // With nats-server stopped (SIGSTOP), nothing can reach the leader by NATS, but its lease is
  // still valid for ~1 s: a write to its own API commits, flushes and is acknowledged anyway.
  cluster.pause('nats');
  let frozen: Awaited<ReturnType<typeof exec>>;
  try {
    frozen = await exec(leader, [{ sql: 'INSERT INTO t(k, v) VALUES (1, ?)', params: ['while nats was frozen'] }]);
  } finally {
    cluster.resume('nats');
  }
  expect(frozen.status).toBe(200);
  expect(frozen.body.epoch).toBeGreaterThan(0);
  // The followers get it by the change stream once nats-server runs again.
  const sums = await converged();
  expect(sums).toEqual({ t: expect.objectContaining({ rows: 1 }) });
  expect(await leaderNow()).toBe(leader);
});

test("a follower's API sends writes to the leader; reads and /v1/cluster work on every replica", async () => {
  const w = await exec(follower, [{ sql: 'INSERT INTO t(k, v) VALUES (2, ?)', params: ['via a follower'] }]);
  expect(w.status).toBe(200);
  const strong = await httpJson('POST', `${api(follower)}/v1/query`, { sql: 'SELECT v FROM t WHERE k = 2', consistency: 'strong' });
  expect(strong.status).toBe(200);
  expect(strong.body).toMatchObject({ rows: [{ v: 'via a follower' }], servedBy: leader });
  const ryw = await httpJson('POST', `${api(leader)}/v1/query`, { sql: 'SELECT count(*) AS n FROM t', consistency: 'read-your-writes', minLsn: w.body.lsn });
  expect(ryw.status).toBe(200);
  expect(BigInt(ryw.body.lsn)).toBeGreaterThanOrEqual(BigInt(w.body.lsn));
  for (const node of cluster.replicaNames) {
    const c = await httpJson('GET', `${api(node)}/v1/cluster`);
    expect(c.status).toBe(200);
    expect(c.body.leader).toBe(leader);
  }
});

test('an idempotency key is honoured across replicas: applied once, the same answer everywhere', async () => {
  const statements = [{ sql: 'INSERT INTO t(k, v) VALUES (3, ?)', params: ['once'] }];
  const first = await exec(leader, statements, { idempotencyKey: 'replica-api-1' });
  expect(first.status).toBe(200);
  const again = await exec(leader, statements, { idempotencyKey: 'replica-api-1' });
  const viaFollower = await exec(follower, statements, { idempotencyKey: 'replica-api-1' });
  expect(again).toMatchObject({ status: 200, body: first.body });
  expect(viaFollower).toMatchObject({ status: 200, body: first.body });
  expect((await converged()).t).toMatchObject({ rows: 3 });
});

test('bad input to a replica API gets the contract error, nothing is applied, and the replica keeps serving', async () => {
  const before = await converged();
  for (const node of [leader, follower]) {
    const url = `${api(node)}/v1/execute`;
    const cases: [string, Promise<{ status: number; body: { error?: { code: string; message: string } } }>, number, string][] = [
      ['malformed JSON', postRaw(url, '{"statements": [{"sql": '), 400, 'BAD_REQUEST'],
      ['no statements', postRaw(url, '{}'), 400, 'BAD_REQUEST'],
      ['a wrong type', postRaw(url, '{"statements": [{"sql": 5}]}'), 400, 'BAD_REQUEST'],
      ['an oversized body', postRaw(url, JSON.stringify({ statements: [{ sql: `SELECT '${'x'.repeat(1024 * 1024)}'` }] })), 413, 'PAYLOAD_TOO_LARGE'],
      ['an SQL syntax error', exec(node, [{ sql: 'INSERT INTO t VALUES (4, ' }]), 400, 'SQL_ERROR'],
      ['an unknown table', exec(node, [{ sql: "INSERT INTO nope VALUES (1, 'x')" }]), 400, 'NO_SUCH_TABLE'],
      ['a constraint violation (with a good statement before it)', exec(node, [{ sql: "INSERT INTO t VALUES (5, 'half')" }, { sql: "INSERT INTO t VALUES (1, 'dup')" }]), 409, 'CONSTRAINT'],
      ['a write sent to /v1/query', httpJson('POST', `${api(node)}/v1/query`, { sql: "INSERT INTO t VALUES (6, 'q')" }), 400, 'WRITE_IN_QUERY'],
    ];
    for (const [what, pending, status, code] of cases) {
      const r = await pending;
      expect({ what, node, status: r.status, code: r.body.error?.code }).toEqual({ what, node, status, code });
      expect(typeof r.body.error?.message).toBe('string');
    }
  }
  const ok = await exec(follower, [{ sql: "INSERT INTO t(k, v) VALUES (7, 'after the bad ones')" }]);
  expect(ok.status).toBe(200);
  const after = (await converged()) as { t: { rows: number } };
  expect(after.t.rows).toBe((before as { t: { rows: number } }).t.rows + 1);
});

test("a frozen leader (SIGSTOP): a keyed write to another replica's API lands on the new leader, once", async () => {
  const survivor = follower;
  const epochBefore = (await httpJson('GET', `${api(survivor)}/v1/cluster`)).body.epoch as number;
  cluster.pause(leader);
  let w: Awaited<ReturnType<typeof exec>>;
  try {
    w = await waitFor(async () => {
      const r = await exec(survivor, [{ sql: "INSERT INTO t(k, v) VALUES (8, 'after failover')" }], { idempotencyKey: 'replica-api-failover' });
      return r.status === 200 ? r : null;
    }, { what: 'a write through another replica after the failover', timeoutMs: 30_000, intervalMs: 200 });
  } finally {
    cluster.resume(leader);
  }
  expect(w.body.epoch).toBeGreaterThan(epochBefore);
  const newLeader = await leaderNow(); // the old leader is back, as a follower of the new epoch
  expect(newLeader).not.toBe(leader);
  const rows = await httpJson('POST', `${api(leader)}/v1/query`, { sql: 'SELECT count(*) AS n FROM t WHERE k = 8', consistency: 'strong' });
  expect(rows.body).toMatchObject({ rows: [{ n: 1 }], servedBy: newLeader });
  await converged();
});
