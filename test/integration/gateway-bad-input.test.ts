/**
 * The gateway process (dist/apps/gateway/src/main.js, `npm run build` first) against a real
 * nats-server and a FAKE replica written here: replica-0 heartbeats as leader, answers `write` and
 * `read.replica-0` as the test scripts it, and records what it was sent. Every bad input must get
 * the right status and an `{error:{code,message}}` body, and the gateway must keep answering.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { connect, Msg, NatsConnection, Subscription } from 'nats';
import {
  decodeEnvelope,
  encode,
  ErrorCode,
  errorReply,
  Heartbeat,
  PROTOCOL_VERSION,
  QueryReply,
  QueryRequest,
  subjectsFor,
  Subjects,
  WriteReply,
  WriteRequest,
} from '@flotilla/protocol';
import { AppHandle, freePort, httpJson, spawnApp, startNatsServer, stopAll, tempDir, waitFor } from '@flotilla/testing';

jest.setTimeout(60_000);

const CLUSTER = 'gwbad';
const MAX_BODY_BYTES = 64 * 1024;
/** Short, so a no-leader write (retried until the budget is spent) answers quickly. */
const REQUEST_TIMEOUT_MS = 1000;
/** Below the request timeout, as the configuration requires. */
const SYNC_TIMEOUT_MS = 500;
const HEARTBEAT_EVERY_MS = 100;

type WriteHandler = (req: WriteRequest) => WriteReply | ReturnType<typeof errorReply> | Promise<WriteReply>;
type ReadHandler = (req: QueryRequest) => QueryReply | ReturnType<typeof errorReply>;

/** replica-0, played by the test: heartbeats as leader of epoch 3 and answers as scripted. */
class FakeReplica {
  readonly writes: WriteRequest[] = [];
  readonly reads: QueryRequest[] = [];
  lsn = 7;
  heartbeating = true;
  onWrite: WriteHandler = () => this.commit();
  onRead: ReadHandler = () => this.rows([{ x: 1 }]);
  private writeSub: Subscription | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly nc: NatsConnection,
    private readonly subjects: Subjects,
  ) {}

  async start(): Promise<void> {
    this.nc.subscribe(this.subjects.read('replica-0'), { callback: (_e, m) => this.answer(m, this.reads, this.onRead) });
    await this.lead();
    this.timer = setInterval(() => this.heartbeat(), HEARTBEAT_EVERY_MS);
    this.heartbeat();
  }

  /** Subscribes to `write` (only the leader does). */
  async lead(): Promise<void> {
    this.writeSub ??= this.nc.subscribe(this.subjects.write, { callback: (_e, m) => this.answer(m, this.writes, this.onWrite) });
    await this.nc.flush();
  }

  /** Unsubscribes from `write`: requests there find no responders. */
  async abdicate(): Promise<void> {
    this.writeSub?.unsubscribe();
    this.writeSub = undefined;
    await this.nc.flush();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  commit(): WriteReply {
    this.lsn++;
    return { type: 'write-reply', v: PROTOCOL_VERSION, lsn: String(this.lsn), epoch: 3, results: [{ changes: 1, lastInsertRowid: '9007199254740993' }] };
  }

  rows(rows: QueryReply['rows']): QueryReply {
    return { type: 'query-reply', v: PROTOCOL_VERSION, rows, lsn: String(this.lsn), servedBy: 'replica-0' };
  }

  private heartbeat(): void {
    if (!this.heartbeating) return;
    const lsn = String(this.lsn);
    const hb: Heartbeat = {
      type: 'hb', v: PROTOCOL_VERSION, node: 'replica-0', role: 'leader', epoch: 3, leader: 'replica-0',
      lsn, appliedLsn: lsn, flushedLsn: lsn, lagMs: 0, sync: false, mode: 'async', logFormat: 'logical', version: 'fake', ts: Date.now(),
    };
    this.nc.publish(this.subjects.heartbeat('replica-0'), encode(hb));
  }

  private answer<T, R>(m: Msg, log: T[], handler: (req: T) => R | Promise<R>): void {
    const req = decodeEnvelope(m.data) as unknown as T;
    log.push(req);
    const reply = handler(req);
    if (reply instanceof Promise) void reply.then((r) => m.respond(encode(r)));
    else m.respond(encode(reply));
  }
}

let nats: Awaited<ReturnType<typeof startNatsServer>>;
let nc: NatsConnection;
let replica: FakeReplica;
let gateway: AppHandle;
let base: string;
let logDir: string;

/** POSTs `text` as is (not JSON-encoded), so malformed and oversized bodies can be sent. */
async function postRaw(route: string, text: string, contentType = 'application/json') {
  const res = await fetch(base + route, { method: 'POST', headers: { 'content-type': contentType }, body: text, signal: AbortSignal.timeout(10_000) });
  const raw = await res.text();
  return { status: res.status, headers: res.headers, body: JSON.parse(raw) as { error?: { code: string; message: string } } & Record<string, unknown>, raw };
}

/** Asserts an error response of exactly the contract's shape, and returns its message. */
function expectError(res: { status: number; body: unknown }, status: number, code: string): string {
  expect({ status: res.status, code: (res.body as { error?: { code?: string } }).error?.code }).toEqual({ status, code });
  const body = res.body as { error: { code: string; message: string } };
  expect(Object.keys(body)).toEqual(['error']);
  expect(Object.keys(body.error).sort()).toEqual(['code', 'message']);
  expect(typeof body.error.message).toBe('string');
  expect(body.error.message).not.toMatch(/\n\s+at /);
  return body.error.message;
}

beforeAll(async () => {
  const dist = path.resolve(__dirname, '../../dist/apps/gateway/src/main.js');
  if (!fs.existsSync(dist)) throw new Error(`${dist} is missing: run \`npm run build\` first`);
  logDir = tempDir('flotilla-gw-bad-');
  nats = await startNatsServer({ jetstream: true });
  nc = await connect({ servers: nats.url });
  replica = new FakeReplica(nc, subjectsFor(CLUSTER));
  await replica.start();
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  gateway = spawnApp(
    'gateway',
    {
      FLOTILLA_CLUSTER: CLUSTER,
      FLOTILLA_NATS_URL: nats.url,
      FLOTILLA_HTTP_PORT: String(port),
      FLOTILLA_HTTP_HOST: '127.0.0.1',
      FLOTILLA_MAX_BODY_BYTES: String(MAX_BODY_BYTES),
      FLOTILLA_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
        FLOTILLA_SYNC_TIMEOUT_MS: String(SYNC_TIMEOUT_MS),
      FLOTILLA_LOG_LEVEL: 'debug',
    },
    { logFile: path.join(logDir, 'gateway.log') },
  );
  await waitFor(async () => (await httpJson('GET', `${base}/readyz`, undefined, { timeoutMs: 1000 })).body?.leader === 'replica-0', {
    timeoutMs: 20_000,
    what: `gateway ready (log: ${path.join(logDir, 'gateway.log')})`,
  });
});

afterAll(async () => {
  replica?.stop();
  await nc?.close();
  await stopAll(); // also removes logDir
});

describe('gateway: bad input', () => {
  it('answers malformed JSON with 400 BAD_REQUEST', async () => {
    for (const text of ['{"statements": [', '{bad json}', "{'statements': []}", '"just a string"']) {
      const message = expectError(await postRaw('/v1/execute', text), 400, 'BAD_REQUEST');
      expect(message).toMatch(/malformed JSON|JSON object/);
    }
    expectError(await postRaw('/v1/query', '{"sql": "SELECT 1",}'), 400, 'BAD_REQUEST');
  });

  it('answers a body that is not an object, or no body, with 400', async () => {
    expect(expectError(await postRaw('/v1/execute', '[{"sql":"SELECT 1"}]'), 400, 'BAD_REQUEST')).toMatch(/body must be a JSON object/);
    // An empty body reads as {}: the missing field is named.
    expect(expectError(await postRaw('/v1/execute', ''), 400, 'BAD_REQUEST')).toMatch(/statements is required/);
  });

  it('names a missing statements field', async () => {
    expect(expectError(await httpJson('POST', `${base}/v1/execute`, {}), 400, 'BAD_REQUEST')).toMatch(/statements is required/);
    expect(expectError(await httpJson('POST', `${base}/v1/execute`, { statements: [] }), 400, 'BAD_REQUEST')).toMatch(/statements should not be empty/);
    expect(expectError(await httpJson('POST', `${base}/v1/query`, { consistency: 'any' }), 400, 'BAD_REQUEST')).toMatch(/sql is required/);
  });

  it('names wrong-typed and unknown fields', async () => {
    const cases: [string, unknown, RegExp][] = [
      ['/v1/execute', { statements: 'SELECT 1' }, /statements must be an array/],
      ['/v1/execute', { statements: [{ sql: 42 }] }, /statements\[0\]\.sql must be a string/],
      ['/v1/execute', { statements: [{ sql: 'SELECT ?', params: [true] }] }, /statements\[0\]\.params\[0\] is true/],
      ['/v1/execute', { statements: [{ sql: 'SELECT :a', params: { a: { $x: 1 } } }] }, /statements\[0\]\.params\.a is/],
      ['/v1/execute', { statements: [{ sql: 'SELECT 1' }], idempotencyKey: 12 }, /idempotencyKey must be a string/],
      ['/v1/execute', { statements: [{ sql: 'SELECT 1' }], durability: 'all' }, /durability must be/],
      ['/v1/execute', { statements: [{ sql: 'SELECT 1' }], transaction: true }, /property transaction should not exist/],
      ['/v1/query', { sql: 'SELECT 1', consistency: 'eventual' }, /consistency must be one of/],
      ['/v1/query', { sql: 'SELECT 1', minLsn: 5 }, /minLsn must be a decimal string/],
      ['/v1/query', { sql: 'SELECT 1', consistency: 'bounded' }, /maxLagMs is required/],
      ['/v1/query', { sql: 'SELECT 1', maxLagMs: 'soon' }, /maxLagMs must be an integer/],
    ];
    for (const [route, body, message] of cases) {
      expect(expectError(await httpJson('POST', base + route, body), 400, 'BAD_REQUEST')).toMatch(message);
    }
  });

  it('answers a body over maxBodyBytes with 413 PAYLOAD_TOO_LARGE', async () => {
    const big = JSON.stringify({ statements: [{ sql: `SELECT '${'x'.repeat(MAX_BODY_BYTES)}'` }] });
    const writesBefore = replica.writes.length;
    const message = expectError(await postRaw('/v1/execute', big), 413, 'PAYLOAD_TOO_LARGE');
    expect(message).toContain(String(MAX_BODY_BYTES));
    expect(replica.writes.length).toBe(writesBefore);
  });

  it('answers an unknown route with 404 NOT_FOUND in the same shape', async () => {
    expectError(await httpJson('GET', `${base}/v1/nope`), 404, 'NOT_FOUND');
  });

  it('never sends the replica a request it refused', async () => {
    const before = { writes: replica.writes.length, reads: replica.reads.length };
    // One of each kind refused above, sent again here so this holds whatever ran before.
    expectError(await postRaw('/v1/execute', '{bad json}'), 400, 'BAD_REQUEST');
    expectError(await httpJson('POST', `${base}/v1/execute`, { statements: [{ sql: 42 }] }), 400, 'BAD_REQUEST');
    expectError(await httpJson('POST', `${base}/v1/query`, { sql: 'SELECT 1', consistency: 'bounded' }), 400, 'BAD_REQUEST');
    expectError(await postRaw('/v1/execute', JSON.stringify({ statements: [{ sql: `SELECT '${'x'.repeat(MAX_BODY_BYTES)}'` }] })), 413, 'PAYLOAD_TOO_LARGE');
    // A good request after them does reach it: the counts below can move.
    expect((await httpJson('POST', `${base}/v1/query`, { sql: 'SELECT 1' })).status).toBe(200);
    expect({ writes: replica.writes.length, reads: replica.reads.length }).toEqual({ writes: before.writes, reads: before.reads + 1 });
  });
});

describe('gateway: pass-through', () => {
  it('passes a good execute to the leader and returns LSNs as strings', async () => {
    const res = await httpJson('POST', `${base}/v1/execute`, {
      statements: [{ sql: 'INSERT INTO t(v) VALUES (?)', params: [{ $i: '9007199254740993' }] }, { sql: 'DELETE FROM t WHERE v = :v', params: { v: null } }],
      idempotencyKey: 'key-1',
    });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ lsn: '8', epoch: 3, results: [{ changes: 1, lastInsertRowid: '9007199254740993' }] });
    expect(replica.writes).toHaveLength(1);
    expect(replica.writes[0]).toEqual({
      type: 'write',
      v: PROTOCOL_VERSION,
      statements: [{ sql: 'INSERT INTO t(v) VALUES (?)', params: [{ $i: '9007199254740993' }] }, { sql: 'DELETE FROM t WHERE v = :v', params: { v: null } }],
      idempotencyKey: 'key-1',
    });
  });

  it('passes queries to replica-0 with what each consistency level needs', async () => {
    replica.reads.length = 0;
    const any = await httpJson('POST', `${base}/v1/query`, { sql: 'SELECT x FROM t', params: [1] });
    expect(any.status).toBe(200);
    expect(any.body).toEqual({ rows: [{ x: 1 }], servedBy: 'replica-0', lsn: '8' });
    expect((await httpJson('POST', `${base}/v1/query`, { sql: 'SELECT 1', consistency: 'strong' })).status).toBe(200);
    expect((await httpJson('POST', `${base}/v1/query`, { sql: 'SELECT 1', minLsn: '8' })).status).toBe(200);
    expect((await httpJson('POST', `${base}/v1/query`, { sql: 'SELECT 1', consistency: 'bounded', maxLagMs: 10 })).status).toBe(200);
    expect(replica.reads).toEqual([
      { type: 'query', v: PROTOCOL_VERSION, sql: 'SELECT x FROM t', params: [1] },
      { type: 'query', v: PROTOCOL_VERSION, sql: 'SELECT 1', requireLeader: true },
      { type: 'query', v: PROTOCOL_VERSION, sql: 'SELECT 1', minLsn: '8', waitMs: 500 },
      { type: 'query', v: PROTOCOL_VERSION, sql: 'SELECT 1', maxLagMs: 10 },
    ]);
  });

  it("maps the replica's error replies through httpStatusOf", async () => {
    replica.onRead = () => errorReply({ code: ErrorCode.WRITE_IN_QUERY, message: 'writes are refused in /v1/query' });
    replica.onWrite = () => errorReply({ code: ErrorCode.CONSTRAINT, message: 'UNIQUE constraint failed: t.id' });
    try {
      expect(expectError(await httpJson('POST', `${base}/v1/query`, { sql: 'DELETE FROM t' }), 400, 'WRITE_IN_QUERY')).toBe('writes are refused in /v1/query');
      expect(expectError(await httpJson('POST', `${base}/v1/execute`, { statements: [{ sql: 'INSERT INTO t VALUES (1)' }] }), 409, 'CONSTRAINT')).toMatch(/UNIQUE/);
    } finally {
      replica.onRead = () => replica.rows([{ x: 1 }]);
      replica.onWrite = () => replica.commit();
    }
  });

  it('shows the cluster with the leader and LSN strings', async () => {
    await waitFor(async () => (await httpJson('GET', `${base}/v1/cluster`)).body.nodes?.[0]?.lsn === String(replica.lsn), { what: 'heartbeat with the new lsn' });
    const res = await httpJson('GET', `${base}/v1/cluster`);
    expect(res.body).toEqual({
      cluster: CLUSTER, epoch: 3, leader: 'replica-0', mode: 'async', logFormat: 'logical',
      nodes: [{
        name: 'replica-0', role: 'leader', epoch: 3, lsn: String(replica.lsn), appliedLsn: String(replica.lsn), flushedLsn: String(replica.lsn), lagMs: 0, sync: false,
        healthy: true, version: 'fake', mode: 'async', logFormat: 'logical', problem: null,
      }],
      failover: { state: 'unknown', monitor: null, reason: 'no failover monitor heard from in the last 2000 ms' },
    });
  });
});

describe('gateway: no leader', () => {
  it('answers a write nobody leads with 503 NO_LEADER and Retry-After, having not applied it', async () => {
    await replica.abdicate();
    try {
      const res = await httpJson('POST', `${base}/v1/execute`, { statements: [{ sql: 'INSERT INTO t VALUES (1)' }] });
      expect(expectError(res, 503, 'NO_LEADER')).toMatch(/not applied/);
      expect(res.headers['retry-after']).toBe('1');
    } finally {
      await replica.lead();
    }
  });

  it('retries NOT_LEADER only for a write with an idempotencyKey', async () => {
    replica.writes.length = 0;
    let refusals = 2;
    replica.onWrite = () => (refusals-- > 0 ? errorReply({ code: ErrorCode.NOT_LEADER, message: 'not the leader', leaderHint: 'replica-1' }) : replica.commit());
    try {
      const keyed = await httpJson('POST', `${base}/v1/execute`, { statements: [{ sql: 'INSERT INTO t VALUES (2)' }], idempotencyKey: 'key-2' });
      expect(keyed.status).toBe(200);
      expect(replica.writes.map((w) => w.idempotencyKey)).toEqual(['key-2', 'key-2', 'key-2']);

      replica.writes.length = 0;
      refusals = 1;
      const unkeyed = await httpJson('POST', `${base}/v1/execute`, { statements: [{ sql: 'INSERT INTO t VALUES (3)' }] });
      expectError(unkeyed, 503, 'NOT_LEADER');
      expect(unkeyed.headers['retry-after']).toBe('1');
      expect(replica.writes).toHaveLength(1);
    } finally {
      replica.onWrite = () => replica.commit();
    }
  });

  it('stays ready without a leader (it is the cluster that has none) and refuses strong reads once the leader stops heartbeating', async () => {
    replica.heartbeating = false;
    try {
      const leaderless = await waitFor(async () => {
        const r = await httpJson('GET', `${base}/readyz`);
        return r.body?.leader === null ? r : undefined;
      }, { what: '/readyz to name no leader' });
      expect(leaderless.status).toBe(200);
      expect(leaderless.body).toEqual({ status: 'ready', leader: null });
      const strong = await httpJson('POST', `${base}/v1/query`, { sql: 'SELECT 1', consistency: 'strong' });
      expectError(strong, 503, 'NO_LEADER');
      expectError(await httpJson('POST', `${base}/v1/query`, { sql: 'SELECT 1' }), 503, 'NO_REPLICA');
      expect((await httpJson('GET', `${base}/v1/cluster`)).body).toMatchObject({ leader: null, nodes: [{ name: 'replica-0', healthy: false }] });
    } finally {
      replica.heartbeating = true;
    }
    await waitFor(async () => (await httpJson('GET', `${base}/readyz`)).body?.leader === 'replica-0', { what: '/readyz naming the leader again' });
  });
});

describe('gateway: no NATS', () => {
  it('is alive but not ready while NATS is unreachable, and refuses a write with 503 instead of dying', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const cut = spawnApp(
      'gateway',
      {
        FLOTILLA_CLUSTER: CLUSTER,
        FLOTILLA_NATS_URL: `nats://127.0.0.1:${await freePort()}`, // nothing listens there
        FLOTILLA_HTTP_PORT: String(port),
        FLOTILLA_HTTP_HOST: '127.0.0.1',
        FLOTILLA_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
        FLOTILLA_SYNC_TIMEOUT_MS: String(SYNC_TIMEOUT_MS),
      },
      { logFile: path.join(logDir, 'gateway-no-nats.log') },
    );
    try {
      const healthy = await waitFor(async () => {
        const r = await httpJson('GET', `${url}/healthz`, undefined, { timeoutMs: 1000 }).catch(() => undefined);
        return r?.status === 200 ? r : undefined;
      }, { what: 'the NATS-less gateway serving /healthz', timeoutMs: 20_000 });
      expect(healthy.body).toEqual({ status: 'ok' });
      const ready = await httpJson('GET', `${url}/readyz`);
      expectError(ready, 503, 'UNAVAILABLE');
      expect(ready.headers['retry-after']).toBe('1');
      expectError(await httpJson('POST', `${url}/v1/execute`, { statements: [{ sql: 'INSERT INTO t VALUES (9)' }] }), 503, 'NO_LEADER');
      expect((await httpJson('GET', `${url}/healthz`)).status).toBe(200);
    } finally {
      expect((await cut.stop()).code).toBe(0);
    }
  });
});

describe('gateway: a body it accepts but NATS cannot carry', () => {
  it('answers 413 (never sent), not a 503 of unknown fate, when maxBodyBytes is set above what a NATS message holds', async () => {
    const port = await freePort();
    const big = spawnApp(
      'gateway',
      {
        FLOTILLA_CLUSTER: CLUSTER,
        FLOTILLA_NATS_URL: nats.url,
        FLOTILLA_HTTP_PORT: String(port),
        FLOTILLA_HTTP_HOST: '127.0.0.1',
        FLOTILLA_MAX_BODY_BYTES: String(4 * 1024 * 1024),
        FLOTILLA_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
        FLOTILLA_SYNC_TIMEOUT_MS: String(SYNC_TIMEOUT_MS),
      },
      { logFile: path.join(logDir, 'gateway-big-body.log') },
    );
    try {
      const url = `http://127.0.0.1:${port}`;
      await waitFor(async () => (await httpJson('GET', `${url}/readyz`, undefined, { timeoutMs: 1000 }).catch(() => undefined))?.body?.leader === 'replica-0', { what: 'the second gateway ready', timeoutMs: 20_000 });
      const writesBefore = replica.writes.length;
      for (const keyed of [false, true]) {
        const body = { statements: [{ sql: 'INSERT INTO t VALUES (?)', params: ['x'.repeat(1_500_000)] }], ...(keyed ? { idempotencyKey: 'big-1' } : {}) };
        const res = await httpJson('POST', `${url}/v1/execute`, body);
        expect(expectError(res, 413, 'PAYLOAD_TOO_LARGE')).toMatch(/nothing was sent/);
      }
      expect(replica.writes.length).toBe(writesBefore);
    } finally {
      expect((await big.stop()).code).toBe(0);
    }
  });
});

describe('gateway: admin and failover', () => {
  it('shows the active monitor in /v1/cluster, runs a switchover through the leader, and merges discarded transactions', async () => {
    // A standby and an active monitor publish their status; replica-1 heartbeats once (a known follower).
    const status = (monitor: string, active: boolean) => ({
      type: 'monitor-status', v: PROTOCOL_VERSION, monitor, active, leader: 'replica-0', epoch: 3, ts: Date.now(),
      state: active ? 'no-candidate' : 'standby', ...(active ? { reason: 'no eligible candidate: replica-1 lags 50 LSNs' } : {}),
    });
    const publisher = setInterval(() => {
      nc.publish(subjectsFor(CLUSTER).monitorStatus, encode(status('monitor-0', false)));
      nc.publish(subjectsFor(CLUSTER).monitorStatus, encode(status('monitor-1', true)));
    }, 100);
    const hb1: Heartbeat = {
      type: 'hb', v: PROTOCOL_VERSION, node: 'replica-1', role: 'follower', epoch: 3, leader: 'replica-0',
      lsn: '1', appliedLsn: '1', flushedLsn: '1', lagMs: 0, sync: false, mode: 'async', logFormat: 'logical', version: 'fake', ts: Date.now(),
    };
    nc.publish(subjectsFor(CLUSTER).heartbeat('replica-1'), encode(hb1));
    const controls: Record<string, unknown>[] = [];
    const control0 = nc.subscribe(subjectsFor(CLUSTER).control('replica-0'), {
      callback: (_e, m) => {
        const req = decodeEnvelope(m.data);
        controls.push(req);
        if (req.type === 'switchover') {
          m.respond(encode({ type: 'switchover-reply', v: PROTOCOL_VERSION, from: 'replica-0', to: req.to, epoch: 4, lsn: String(replica.lsn) }));
        } else if (req.type === 'discarded') {
          const txn = { node: 'replica-0', lsn: '6', epoch: 2, ts: 1, discardedAt: 2, changes: [{ op: 'ins', t: 't', rid: '1', row: [1] }], cols: { t: ['x'] } };
          m.respond(encode({ type: 'discarded-reply', v: PROTOCOL_VERSION, node: 'replica-0', transactions: [txn] }));
        }
      },
    });
    await nc.flush();
    try {
      const cluster = await waitFor(async () => {
        const r = await httpJson('GET', `${base}/v1/cluster`);
        return r.body.failover?.monitor === 'monitor-1' && r.body.nodes?.length === 2 ? r.body : undefined;
      }, { what: 'the active monitor and replica-1 in /v1/cluster' });
      expect(cluster.failover).toEqual({ state: 'no-candidate', monitor: 'monitor-1', reason: 'no eligible candidate: replica-1 lags 50 LSNs' });

      const done = await httpJson('POST', `${base}/v1/admin/switchover`, { to: 'replica-1' });
      expect(done.status).toBe(200);
      expect(done.body).toEqual({ from: 'replica-0', to: 'replica-1', epoch: 4, lsn: String(replica.lsn) });
      expect(controls[0]).toMatchObject({ type: 'switchover', v: 1, to: 'replica-1' });
      expectError(await httpJson('POST', `${base}/v1/admin/switchover`, { to: 'replica-0' }), 409, 'CONFLICT');
      expect(expectError(await httpJson('POST', `${base}/v1/admin/switchover`, { to: 'replica-7' }), 400, 'BAD_REQUEST')).toMatch(/not a known replica/);
      expect(expectError(await httpJson('POST', `${base}/v1/admin/switchover`, {}), 400, 'BAD_REQUEST')).toMatch(/to is required/);

      // replica-1 has no control subscriber: it is listed as unavailable, replica-0's quarantine is returned.
      const discarded = await httpJson('GET', `${base}/v1/admin/discarded`);
      expect(discarded.status).toBe(200);
      expect(discarded.body.discarded).toEqual([expect.objectContaining({ node: 'replica-0', lsn: '6', epoch: 2 })]);
      expect(discarded.body.unavailable).toEqual([{ node: 'replica-1', reason: 'no-responders' }]);
    } finally {
      clearInterval(publisher);
      control0.unsubscribe();
    }
  });
});

describe('gateway: still serving afterwards', () => {
  it('answers probes, a good write, metrics and the OpenAPI document', async () => {
    expect(gateway.running).toBe(true);
    expect(await httpJson('GET', `${base}/healthz`)).toMatchObject({ status: 200, body: { status: 'ok' } });
    const write = await httpJson('POST', `${base}/v1/execute`, { statements: [{ sql: 'INSERT INTO t VALUES (4)' }] });
    expect(write.status).toBe(200);
    expect(write.body.lsn).toBe(String(replica.lsn));

    const metrics = await fetch(`${base}/metrics`).then((r) => r.text());
    expect(metrics).toMatch(/flotilla_gateway_http_requests_total\{route="\/v1\/execute",method="POST",status="400"\} \d+/);
    expect(metrics).toMatch(/flotilla_gateway_http_requests_total\{route="unmatched",method="POST",status="413"\} [1-9]\d*\n/);
    expect(metrics).toMatch(/flotilla_gateway_http_request_duration_seconds_bucket\{/);

    const openapi = await httpJson('GET', `${base}/v1/openapi.json`);
    expect(openapi.status).toBe(200);
    expect(Object.keys(openapi.body.paths).sort()).toEqual(['/v1/admin/discarded', '/v1/admin/mode', '/v1/admin/switchover', '/v1/cluster', '/v1/execute', '/v1/query']);
    expect(openapi.body.components.schemas.ExecuteRequestDto.required).toEqual(['statements']);
    // As enforced: maxLagMs is an integer, sql and idempotencyKey are never empty, results may carry rows.
    const schemas = openapi.body.components.schemas;
    expect(schemas.QueryRequestDto.properties.maxLagMs.type).toBe('integer');
    expect(schemas.StatementDto.properties.sql.minLength).toBe(1);
    expect(schemas.ExecuteRequestDto.properties.idempotencyKey.minLength).toBe(1);
    expect(schemas.ExecResultDto.properties.rows.type).toBe('array');
  });

  it('on SIGTERM answers the request in flight, refuses one that arrives meanwhile with the contract 503, and exits 0', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    replica.onWrite = () => held.then(() => replica.commit());
    const socket = net.connect(Number(new URL(base).port), '127.0.0.1');
    let received = '';
    socket.setEncoding('utf8').on('data', (d: string) => (received += d));
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    const body = JSON.stringify({ statements: [{ sql: 'INSERT INTO t VALUES (10)' }] });
    const writesBefore = replica.writes.length;
    socket.write(`POST /v1/execute HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    await waitFor(() => replica.writes.length > writesBefore, { what: 'the write held at the replica' });

    const refusals = () => fs.readFileSync(gateway.logFile, 'utf8').split('"request refused"').length - 1;
    const refusedBefore = refusals();
    gateway.kill('SIGTERM');
    await waitFor(() => fs.readFileSync(gateway.logFile, 'utf8').includes('gateway stopping'), { what: '"gateway stopping" in the log' });
    // The connection is busy with the held write, so it stays open: a second request on it arrives
    // while the gateway closes.
    socket.write('GET /v1/cluster HTTP/1.1\r\nHost: gw\r\n\r\n');
    await waitFor(() => refusals() > refusedBefore, { what: 'the second request refused' });
    release();
    await closed;

    const responses = received.split(/(?=HTTP\/1\.1 )/);
    expect(responses.map((r) => r.slice(0, 12))).toEqual(['HTTP/1.1 200', 'HTTP/1.1 503']);
    const [head, json] = responses[1].split('\r\n\r\n');
    expect(head.toLowerCase()).toContain('retry-after: 1');
    const refused = JSON.parse(json);
    expect(Object.keys(refused)).toEqual(['error']);
    expect(refused.error.code).toBe('UNAVAILABLE');
    expect(refused.error.message).toMatch(/shutting down/);
    expect((await gateway.exitStatus).code).toBe(0);
  });
});
