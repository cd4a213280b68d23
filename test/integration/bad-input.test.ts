/**
 * Bad input against a real cluster (gateway, two replicas, nats-server): each gets its status and
 * an {error:{code,message}} body, nothing is applied or half-applied, no process dies, and later
 * requests work. Log entries a follower must refuse (out of order, older epoch, bad checksum) are
 * published straight onto the change stream.
 */
import * as fs from 'node:fs';
import { createInbox, NatsConnection } from 'nats';
import { LocalCluster } from '@flotilla/local-cluster';
import { decodeBatchFrame, decodeEnvelope, encode, encodeBatchFrame, LogBatch, payloadCrc, PROTOCOL_VERSION, subjectsFor } from '@flotilla/protocol';
import { DEFAULTS } from '@flotilla/config';
import { MISSED_HEARTBEATS_STALE } from '@flotilla/replication';
import { httpJson, startLocalCluster, stopAll, waitFor } from '@flotilla/testing';
import { fileChecksums, natsClient, statusOf } from './support';

jest.setTimeout(120_000);

let cluster: LocalCluster;
let nc: NatsConnection;
let leader: string;
let follower: string;

/** A request to the gateway (`path` from /), or to any URL. */
async function raw(method: string, path: string, body: string, contentType = 'application/json') {
  const res = await fetch(path.startsWith('http') ? path : `${cluster.gatewayUrl}${path}`, { method, body, headers: { 'content-type': contentType } });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = { unparsable: text };
  }
  return { status: res.status, body: json, retryAfter: res.headers.get('retry-after') };
}

/** Everything a bad request must leave as it was. */
async function state() {
  const s = await statusOf(nc, leader);
  // The follower's data too (an `any` read may be served there), once it holds the leader's LSN.
  await waitFor(async () => (await statusOf(nc, follower)).heartbeat.lsn === s.heartbeat.lsn, { what: `${follower} at the leader's LSN ${s.heartbeat.lsn}` });
  return {
    lsn: s.heartbeat.lsn,
    leader: fileChecksums(cluster.replicaDbFile(leader)).tables,
    follower: fileChecksums(cluster.replicaDbFile(follower)).tables,
    pids: cluster.replicaNames.map((n) => cluster.pid(n)).concat(cluster.pid('gateway')),
  };
}

beforeAll(async () => {
  ({ cluster } = await startLocalCluster({ replicas: 2, monitor: false, env: { FLOTILLA_MAX_BODY_BYTES: String(64 * 1024) } }));
  await cluster.waitUntilReady();
  nc = await natsClient(cluster.natsUrl);
  const c = await waitFor(async () => {
    const r = await httpJson('GET', `${cluster.gatewayUrl}/v1/cluster`);
    return r.body?.leader && r.body.nodes?.length === 2 ? r.body : null;
  }, { what: 'leader and 2 nodes' });
  leader = c.leader;
  follower = cluster.replicaNames.find((n) => n !== leader)!;
  const setup = await httpJson('POST', `${cluster.gatewayUrl}/v1/execute`, {
    statements: [
      { sql: 'CREATE TABLE accounts(id INTEGER PRIMARY KEY, owner TEXT NOT NULL UNIQUE, balance INTEGER NOT NULL CHECK (balance >= 0))' },
      { sql: "INSERT INTO accounts(owner, balance) VALUES ('ann', 100), ('bob', 50)" },
    ],
  });
  expect(setup.status).toBe(200);
});

afterAll(async () => {
  await nc?.close();
  await stopAll();
});

const cases: [string, () => Promise<{ status: number; body: any }>, number, string][] = [
  ['malformed JSON', () => raw('POST', '/v1/execute', '{"statements": [{"sql": "INSERT'), 400, 'BAD_REQUEST'],
  ['missing statements', () => raw('POST', '/v1/execute', '{}'), 400, 'BAD_REQUEST'],
  ['statements of the wrong type', () => raw('POST', '/v1/execute', '{"statements": "DELETE FROM accounts"}'), 400, 'BAD_REQUEST'],
  ['sql of the wrong type', () => raw('POST', '/v1/execute', '{"statements": [{"sql": 42}]}'), 400, 'BAD_REQUEST'],
  ['params of the wrong type', () => raw('POST', '/v1/execute', '{"statements": [{"sql": "DELETE FROM accounts WHERE id = ?", "params": [true]}]}'), 400, 'BAD_REQUEST'],
  [
    // 400,000 quotes: 800 KB in the log entry, 1.6 MB once escaped into a NATS message (1 MiB at most)
    'a transaction whose log entry would not fit a replication message once escaped',
    () => raw('POST', '/v1/execute', JSON.stringify({ statements: [{ sql: "INSERT INTO accounts(owner, balance) VALUES (replace(hex(zeroblob(200000)), '0', '\"'), 1)" }] })),
    413,
    'PAYLOAD_TOO_LARGE',
  ],
  ['an oversized body', () => raw('POST', '/v1/execute', JSON.stringify({ statements: [{ sql: "INSERT INTO accounts(owner, balance) VALUES ('x', 1)", params: [], pad: 'x'.repeat(100_000) }] })), 413, 'PAYLOAD_TOO_LARGE'],
  ['a SQL syntax error', () => raw('POST', '/v1/execute', JSON.stringify({ statements: [{ sql: 'UPDAT accounts SET balance = 0' }] })), 400, 'SQL_ERROR'],
  ['an unknown table', () => raw('POST', '/v1/execute', JSON.stringify({ statements: [{ sql: 'DELETE FROM nosuch' }] })), 400, 'NO_SUCH_TABLE'],
  ['an unknown table in a query', () => raw('POST', '/v1/query', JSON.stringify({ sql: 'SELECT * FROM nosuch' })), 400, 'NO_SUCH_TABLE'],
  ['a write sent to /v1/query', () => raw('POST', '/v1/query', JSON.stringify({ sql: 'DELETE FROM accounts' })), 400, 'WRITE_IN_QUERY'],
  ['a write sent to /v1/query with strong consistency', () => raw('POST', '/v1/query', JSON.stringify({ sql: "UPDATE accounts SET balance = 0", consistency: 'strong' })), 400, 'WRITE_IN_QUERY'],
  [
    'a transaction whose second statement fails (the first must not be applied)',
    () =>
      raw('POST', '/v1/execute', JSON.stringify({ statements: [{ sql: "UPDATE accounts SET balance = balance - 70 WHERE owner = 'ann'" }, { sql: "UPDATE accounts SET balance = balance - 70 WHERE owner = 'bob'" }] })),
    409,
    'CONSTRAINT',
  ],
  ['a duplicate key', () => raw('POST', '/v1/execute', JSON.stringify({ statements: [{ sql: "INSERT INTO accounts(owner, balance) VALUES ('ann', 1)" }] })), 409, 'CONSTRAINT'],
  ['transaction control', () => raw('POST', '/v1/execute', JSON.stringify({ statements: [{ sql: 'BEGIN' }] })), 400, 'BAD_REQUEST'],
  [
    // Once read as a SELECT ('COMMIT;' is not 'COMMIT'): it committed the whole group unlogged.
    'transaction control with a trailing semicolon after a write',
    () => raw('POST', '/v1/execute', JSON.stringify({ statements: [{ sql: "UPDATE accounts SET balance = 0 WHERE owner = 'ann'" }, { sql: 'COMMIT;' }] })),
    400,
    'BAD_REQUEST',
  ],
  ['DDL hidden behind a comment into the temp schema', () => raw('POST', '/v1/execute', JSON.stringify({ statements: [{ sql: 'CREATE/**/TABLE temp.sneaky(a)' }] })), 400, 'BAD_REQUEST'],
  ['an integer beyond 2^53 as a JSON number', () => raw('POST', '/v1/execute', '{"statements":[{"sql":"UPDATE accounts SET balance = ? WHERE owner = \'ann\'","params":[9007199254740993]}]}'), 400, 'BAD_REQUEST'],
  ['a reserved table', () => raw('POST', '/v1/execute', JSON.stringify({ statements: [{ sql: 'DELETE FROM _flotilla_log' }] })), 400, 'BAD_REQUEST'],
  [
    // Its answer (2 MB) could not be sent back in one NATS message: the leader died trying.
    'a write whose answer would not fit a message (a SELECT or RETURNING of 2 MB)',
    () => raw('POST', '/v1/execute', JSON.stringify({ statements: [{ sql: "UPDATE accounts SET balance = balance WHERE owner = 'ann' RETURNING printf('%.*c', 2000000, 'x') AS big" }] })),
    413,
    'PAYLOAD_TOO_LARGE',
  ],
  ['a SELECT in /v1/execute whose answer would not fit a message', () => raw('POST', '/v1/execute', JSON.stringify({ statements: [{ sql: "SELECT printf('%.*c', 2000000, 'x') AS big" }] })), 413, 'PAYLOAD_TOO_LARGE'],
  [
    // Two replicas: three copies can never be had. It used to commit, then answer 503 after
    // syncTimeoutMs. The gateway refuses it before sending, and the leader would too (next case),
    // so this case shows the answer; gateway-router.spec shows which of the two gave it.
    'durability {replicas: n} above the number of replicas',
    async () => {
      // A gateway judges it only once it has had time to hear every node (a few heartbeat intervals
      // after its first heartbeat): until then the leader's wait decides, and it would commit.
      await new Promise((r) => setTimeout(r, MISSED_HEARTBEATS_STALE * DEFAULTS.heartbeatIntervalMs));
      return raw('POST', '/v1/execute', JSON.stringify({ statements: [{ sql: "INSERT INTO accounts(owner, balance) VALUES ('zed', 1)" }], durability: { replicas: 3 } }));
    },
    503,
    'NOT_ENOUGH_REPLICAS',
  ],
  [
    // The leader judges it too, from the heartbeats it heard: its own API (the chart's -rw Service) has no gateway.
    "durability {replicas: n} above the number of replicas, sent to the leader's own API",
    () => raw('POST', `${cluster.apiUrl(leader)}/v1/execute`, JSON.stringify({ statements: [{ sql: "INSERT INTO accounts(owner, balance) VALUES ('zed', 1)" }], durability: { replicas: 3 } })),
    503,
    'NOT_ENOUGH_REPLICAS',
  ],
  ['SQL that runs past statementTimeoutMs (a write)', () => raw('POST', '/v1/execute', JSON.stringify({ statements: [{ sql: "UPDATE accounts SET balance = balance WHERE owner = 'ann'" }, { sql: 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c' }] })), 400, 'STATEMENT_TIMEOUT'],
  ['SQL that runs past statementTimeoutMs (a query)', () => raw('POST', '/v1/query', JSON.stringify({ sql: 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c' })), 400, 'STATEMENT_TIMEOUT'],
  ["client SQL calling the deadline's guard function", () => raw('POST', '/v1/query', JSON.stringify({ sql: "SELECT flotilla_guard('guess', 0)" })), 400, 'SQL_ERROR'],
];

test.each(cases)('%s: answered with its status, nothing applied, every process alive', async (_name, send, status, code) => {
  const before = await state();
  const r = await send();
  expect({ status: r.status, code: r.body?.error?.code }).toEqual({ status, code });
  expect(typeof r.body.error.message).toBe('string');
  expect(JSON.stringify(r.body)).not.toMatch(/\bat .*\.(js|ts):\d+/); // no stack trace
  expect(await state()).toEqual(before);
  // And the cluster still takes good requests.
  const ok = await httpJson('POST', `${cluster.gatewayUrl}/v1/query`, { sql: 'SELECT sum(balance) AS total FROM accounts', consistency: 'strong' });
  expect(ok.status).toBe(200);
  expect(ok.body.rows).toEqual([{ total: 150 }]);
});

test('log entries out of order, from an older epoch or with a bad checksum are refused, logged, and not applied', async () => {
  const subjects = subjectsFor('flotilla');
  const s = await statusOf(nc, follower);
  const lsn = Number(s.heartbeat.lsn);
  const epoch = s.heartbeat.epoch;
  const payload = JSON.stringify({ format: 'logical', changes: [{ op: 'ins', t: 'accounts', rid: '99', row: [99, 'mallory', 1_000_000] }], cols: { accounts: ['id', 'owner', 'balance'] }, results: [] });
  const entry = (over: Partial<{ lsn: string; epoch: number; crc: number }>) => ({ lsn: String(lsn + 1), epoch, ts: Date.now(), crc: payloadCrc(payload), payload, ...over });
  const batch = (epochOfBatch: number, entries: unknown[]): LogBatch => ({ type: 'entries', v: PROTOCOL_VERSION, epoch: epochOfBatch, leader: 'impostor', entries: entries as LogBatch['entries'] });
  const before = fileChecksums(cluster.replicaDbFile(follower));
  // A gap inside a message of three entries: one refusal for the message, not one per entry.
  nc.publish(subjects.log, encode(batch(epoch, [entry({ lsn: String(lsn + 5) }), entry({ lsn: String(lsn + 6) }), entry({ lsn: String(lsn + 7) })])));
  nc.publish(subjects.log, encode(batch(epoch - 1, [entry({ epoch: epoch - 1 })])));
  nc.publish(subjects.log, encode(batch(epoch, [entry({ crc: 12345 })])));
  nc.publish(subjects.log, new TextEncoder().encode('{"type":"entries","v":1,"epoch":"x"}'));
  const logFile = `${cluster.dataDir}/logs/${follower}.log`;
  const refusals = await waitFor(
    () => {
      const lines = fs.readFileSync(logFile, 'utf8').split('\n').filter((l) => l.includes('"refused message"'));
      return lines.length >= 4 ? lines.map((l) => JSON.parse(l).reason as string) : null;
    },
    { what: '4 refusals in the follower log', timeoutMs: 10_000 },
  );
  expect(refusals.some((r) => /out of order/.test(r))).toBe(true);
  expect(refusals.some((r) => /older than ours/.test(r))).toBe(true);
  expect(refusals.some((r) => /bad checksum/.test(r))).toBe(true);
  expect(refusals.some((r) => /malformed/.test(r))).toBe(true);
  expect(fileChecksums(cluster.replicaDbFile(follower))).toEqual(before);
  // Still following: a genuine write reaches it.
  const w = await httpJson('POST', `${cluster.gatewayUrl}/v1/execute`, { statements: [{ sql: "INSERT INTO accounts(owner, balance) VALUES ('cy', 5)" }] });
  expect(w.status).toBe(200);
  await waitFor(async () => Number((await statusOf(nc, follower)).heartbeat.lsn) === Number(w.body.lsn), { what: 'follower applied the genuine write' });
  expect(fileChecksums(cluster.replicaDbFile(follower)).tables).toEqual(fileChecksums(cluster.replicaDbFile(leader)).tables);
  const gapRefusals = fs.readFileSync(logFile, 'utf8').split('\n').filter((l) => l.includes('"refused message"') && /out of order: expected/.test(l));
  expect(gapRefusals).toHaveLength(1);
});

test('batch frames on the write subject: a malformed frame is refused whole, a bad write in a good frame fails alone', async () => {
  const subjects = subjectsFor('flotilla');
  const sum = async () => (await httpJson('POST', `${cluster.gatewayUrl}/v1/query`, { sql: 'SELECT count(*) AS n, sum(balance) AS total FROM accounts', consistency: 'strong' })).body.rows[0];
  const before = await sum();
  const { pids, lsn: lsnBefore } = await state();
  const write = (sql: string) => encode({ type: 'write', v: PROTOCOL_VERSION, statements: [{ sql }] });

  // Truncated: answered with one plain BAD_REQUEST (the gateway gives it to every write of the frame).
  const good = encodeBatchFrame([{ id: 1, data: write("INSERT INTO accounts(owner, balance) VALUES ('eve', 1)") }, { id: 2, data: write('SELECT 1') }]);
  const refused = decodeEnvelope((await nc.request(subjects.write, good.subarray(0, good.length - 3), { timeout: 10_000 })).data);
  expect(refused).toMatchObject({ type: 'error', error: { code: 'BAD_REQUEST', message: expect.stringMatching(/batch frame/) } });
  expect(await sum()).toEqual(before);
  expect((await state()).lsn).toBe(lsnBefore);

  // Good frame, mixed writes: each answered under its own id, only the valid one applied.
  const inbox = createInbox();
  const replies = new Map<number, any>();
  const sub = nc.subscribe(inbox, {
    callback: (_e, m) => {
      for (const it of decodeBatchFrame(m.data)) replies.set(it.id, JSON.parse(new TextDecoder().decode(it.data)));
    },
  });
  nc.publish(
    subjects.write,
    encodeBatchFrame([
      { id: 11, data: write("INSERT INTO accounts(owner, balance) VALUES ('dee', 7)") },
      { id: 12, data: new TextEncoder().encode('{"type":"write","v":1,"statements":"nope"}') },
      { id: 13, data: write('UPDAT accounts SET balance = 0') },
      { id: 14, data: write("INSERT INTO accounts(owner, balance) VALUES ('ann', 1)") },
    ]),
    { reply: inbox },
  );
  await waitFor(() => replies.size === 4 || null, { what: 'a reply to each of the 4 writes' });
  sub.unsubscribe();
  expect(replies.get(11)).toMatchObject({ type: 'write-reply', lsn: expect.any(String) });
  expect(replies.get(12)).toMatchObject({ type: 'error', error: { code: 'BAD_REQUEST' } });
  expect(replies.get(13)).toMatchObject({ type: 'error', error: { code: 'SQL_ERROR' } });
  expect(replies.get(14)).toMatchObject({ type: 'error', error: { code: 'CONSTRAINT' } });
  expect(await sum()).toEqual({ n: before.n + 1, total: before.total + 7 });

  const logFile = `${cluster.dataDir}/logs/${leader}.log`;
  const refusals = fs.readFileSync(logFile, 'utf8').split('\n').filter((l) => l.includes('"refused message"')).map((l) => JSON.parse(l).reason as string);
  expect(refusals.some((r) => /batch frame item 1 claims/.test(r))).toBe(true);
  expect((await state()).pids).toEqual(pids);
});
