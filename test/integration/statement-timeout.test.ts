/**
 * A statement that never ends, against a real cluster (3 replicas, the failover monitors, gateway,
 * nats-server): SQLite stops it at `statementTimeoutMs` and the client gets 400 STATEMENT_TIMEOUT.
 * Without the deadline it held the leader's event loop for good: no lease renewal, a failover, and
 * a client that sent it again held the next leader too. Here the leader keeps its lease, the writes
 * of other clients (some in the same group commit as the runaway ones) all commit, once each, and
 * every replica ends with the same data.
 */
import { LocalCluster } from '@flotilla/local-cluster';
import { httpJson, startLocalCluster, stopAll, waitFor } from '@flotilla/testing';
import { fileChecksums } from './support';

jest.setTimeout(120_000);

const TIMEOUT_MS = 300;
const COUNT_FOR_EVER = 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) AS n FROM c';
const INSERT_NOTHING_FOR_EVER = `INSERT INTO t(k, v) SELECT x, 'never' FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c) WHERE x < 0`;

let cluster: LocalCluster;

beforeAll(async () => {
  ({ cluster } = await startLocalCluster({ replicas: 3, monitor: true, env: { FLOTILLA_STATEMENT_TIMEOUT_MS: String(TIMEOUT_MS) } }));
  await cluster.waitUntilReady();
  const r = await httpJson('POST', `${cluster.gatewayUrl}/v1/execute`, { statements: [{ sql: 'CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT NOT NULL)' }] });
  expect(r.status).toBe(200);
});

afterAll(async () => {
  await stopAll();
});

const leaderNow = async () => (await httpJson('GET', `${cluster.gatewayUrl}/v1/cluster`)).body.leader as string | null;

test('runaway writes and queries are stopped with STATEMENT_TIMEOUT; no failover, other writes commit once each', async () => {
  const leader = await leaderNow();
  expect(leader).not.toBeNull();
  const first = await httpJson('POST', `${cluster.gatewayUrl}/v1/execute`, { statements: [{ sql: "INSERT INTO t(k, v) VALUES (0, 'first')" }] });
  expect(first.status).toBe(200);
  const epoch = first.body.epoch as number;
  const pids = () => [...cluster.replicaNames, 'gateway'].map((n) => cluster.pid(n));
  const pidsBefore = pids();

  // Other clients write all along, keyed (the gateway retries a keyed write on a new leader).
  let writing = true;
  const acked: { k: number; epoch: number }[] = [];
  const failed: unknown[] = [];
  const writer = async (w: number) => {
    for (let i = 0; writing; i++) {
      const k = 1 + w * 100_000 + i;
      const r = await httpJson('POST', `${cluster.gatewayUrl}/v1/execute`, { statements: [{ sql: 'INSERT INTO t(k, v) VALUES (?, ?)', params: [k, `w${w}`] }], idempotencyKey: `w-${k}` });
      if (r.status === 200) acked.push({ k, epoch: r.body.epoch });
      else failed.push({ k, status: r.status, body: r.body });
    }
  };
  const writers = [0, 1, 2, 3].map(writer);

  const runaway = async (path: string, body: object) => {
    const started = performance.now();
    const r = await httpJson('POST', `${cluster.gatewayUrl}${path}`, body);
    return { status: r.status, code: r.body?.error?.code as string, ms: performance.now() - started };
  };
  // Several at once, then one client sending the same write again and again, each time it fails.
  const together = await Promise.all([
    runaway('/v1/execute', { statements: [{ sql: INSERT_NOTHING_FOR_EVER }] }),
    runaway('/v1/execute', { statements: [{ sql: "INSERT INTO t(k, v) VALUES (-1, 'lost with the runaway')" }, { sql: INSERT_NOTHING_FOR_EVER }] }),
    runaway('/v1/execute', { statements: [{ sql: COUNT_FOR_EVER }] }),
    runaway('/v1/query', { sql: COUNT_FOR_EVER, consistency: 'strong' }),
    runaway('/v1/query', { sql: COUNT_FOR_EVER, consistency: 'any' }),
  ]);
  const again = [];
  for (let i = 0; i < 8; i++) again.push(await runaway('/v1/execute', { statements: [{ sql: INSERT_NOTHING_FOR_EVER }], idempotencyKey: `runaway-${i}` }));
  writing = false;
  await Promise.all(writers);

  for (const r of [...together, ...again]) {
    expect({ status: r.status, code: r.code }).toEqual({ status: 400, code: 'STATEMENT_TIMEOUT' });
    expect(r.ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 5);
  }
  // 8 × 300 ms of runaway writes in a row, longer than the lease (1.5 s): the leader kept it, and
  // ran one runaway request per turn of its event loop, so every other client got through meanwhile.
  expect(failed).toEqual([]);
  for (const w of [0, 1, 2, 3]) expect(acked.filter((a) => Math.floor(a.k / 100_000) === w).length).toBeGreaterThan(0);
  expect(new Set(acked.map((a) => a.epoch))).toEqual(new Set([epoch]));
  expect(await leaderNow()).toBe(leader);

  // Every replica holds exactly the acknowledged rows, nothing of the runaway requests.
  const expected = [0, ...acked.map((a) => a.k)].sort((a, b) => a - b);
  const rows = await httpJson('POST', `${cluster.gatewayUrl}/v1/query`, { sql: 'SELECT k FROM t ORDER BY k', consistency: 'strong' });
  expect(rows.status).toBe(200);
  expect(rows.body.rows.map((r: { k: number }) => r.k)).toEqual(expected);
  const leaderFile = fileChecksums(cluster.replicaDbFile(leader!));
  for (const n of cluster.replicaNames) {
    await waitFor(async () => fileChecksums(cluster.replicaDbFile(n)).lsn === leaderFile.lsn || null, { what: `${n} at LSN ${leaderFile.lsn}` });
    expect(fileChecksums(cluster.replicaDbFile(n)).tables).toEqual(leaderFile.tables);
  }
  // And every process is the one that started: none died or was restarted.
  expect(pids()).toEqual(pidsBefore);
});
