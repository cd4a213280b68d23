import { FakeClock, MemoryLogger } from '@flotilla/logging';
import {
  decodeEnvelope,
  encode,
  ErrorCode,
  errorReply,
  FlotillaError,
  Heartbeat,
  PROTOCOL_VERSION,
  QueryRequest,
  subjectsFor,
  WriteRequest,
} from '@flotilla/protocol';
import { ClusterView } from '../../../libs/replication/src/cluster-view';
import { GatewayRouter, LEADER_CHANGE_POLL_MS, QueryInput, WRITE_ATTEMPT_MIN_MS, WRITE_RETRY_MAX_DELAY_MS } from './gateway-router';
import { RequestFailure, RequestFailureKind, Requester } from './requester';

const subjects = subjectsFor('unit');
const REQUEST_TIMEOUT_MS = 2000;
const READ_WAIT_MS = 300;

type Answer = unknown | RequestFailure;

/** A scripted NATS: each request is answered by `answer(subject, message)`; a RequestFailure is thrown. */
class FakeRequester implements Requester {
  readonly sent: { subject: string; message: Record<string, unknown>; timeoutMs: number; at: number }[] = [];
  answer: (subject: string, message: Record<string, unknown>) => Answer = () => new RequestFailure(RequestFailureKind.NO_RESPONDERS, 'no responders');

  constructor(private readonly clock: FakeClock) {}

  async request(subject: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    const message = decodeEnvelope(data);
    this.sent.push({ subject, message, timeoutMs, at: this.clock.monotonic() });
    const a = this.answer(subject, message);
    if (a instanceof RequestFailure) {
      if (a.kind === RequestFailureKind.TIMEOUT) this.clock.advance(timeoutMs);
      throw a;
    }
    return encode(a);
  }
}

function hb(node: string, fields: Partial<Heartbeat> = {}): Heartbeat {
  return {
    type: 'hb', v: PROTOCOL_VERSION, node, role: 'follower', epoch: 1, leader: 'replica-0', lsn: '10', appliedLsn: '10',
    flushedLsn: '10', lagMs: 0, sync: false, mode: 'async', logFormat: 'logical', version: 't', ts: 0, ...fields,
  };
}

function writeReply(lsn: string) {
  return { type: 'write-reply', v: PROTOCOL_VERSION, lsn, epoch: 1, results: [{ changes: 1, lastInsertRowid: '1' }] };
}

function queryReply(node: string, lsn = '10') {
  return { type: 'query-reply', v: PROTOCOL_VERSION, rows: [{ a: 1 }], lsn, servedBy: node };
}

function setup() {
  const clock = new FakeClock();
  const view = new ClusterView({ clock });
  const requester = new FakeRequester(clock);
  const router = new GatewayRouter({ subjects, view, requester, clock, logger: new MemoryLogger(), requestTimeoutMs: REQUEST_TIMEOUT_MS, readWaitMs: READ_WAIT_MS });
  return { clock, view, requester, router };
}

/** Settles `p`, moving the fake clock forward 10 ms at a time while it waits on timers. */
async function settle<T>(p: Promise<T>, clock: FakeClock): Promise<T> {
  let done = false;
  const tracked = p.finally(() => (done = true));
  tracked.catch(() => undefined);
  for (let i = 0; i < 10_000 && !done; i++) {
    await new Promise((r) => setImmediate(r));
    if (!done) clock.advance(10);
  }
  return tracked;
}

async function failure(p: Promise<unknown>, clock: FakeClock): Promise<FlotillaError> {
  try {
    await settle(p, clock);
  } catch (err) {
    expect(err).toBeInstanceOf(FlotillaError);
    return err as FlotillaError;
  }
  throw new Error('expected a failure');
}

const write = (idempotencyKey?: string) => ({ statements: [{ sql: 'INSERT INTO t VALUES (1)' }], idempotencyKey });
const read = (q: Partial<QueryInput> = {}): QueryInput => ({ sql: 'SELECT a FROM t', consistency: 'any', ...q });

describe('GatewayRouter.execute', () => {
  it('sends a WriteRequest to the write subject and returns the reply', async () => {
    const { clock, requester, router } = setup();
    requester.answer = () => writeReply('11');
    const reply = await settle(router.execute({ ...write('k'), durability: 'sync' }), clock);
    expect(reply).toMatchObject({ lsn: '11', epoch: 1 });
    expect(requester.sent).toEqual([
      { subject: subjects.write, at: 0, timeoutMs: REQUEST_TIMEOUT_MS, message: { type: 'write', v: 1, statements: [{ sql: 'INSERT INTO t VALUES (1)' }], idempotencyKey: 'k', durability: 'sync' } },
    ]);
  });

  it('refuses {replicas: n} above the replicas the heartbeats know of, before sending it (nothing applied)', async () => {
    const { clock, view, requester, router } = setup();
    requester.answer = () => writeReply('11');
    // Nothing heard for a long while (NATS connected late): not judged, the leader's wait decides.
    clock.advance(60_000);
    await expect(settle(router.execute({ ...write(), durability: { replicas: 3 } }), clock)).resolves.toMatchObject({ lsn: '11' });
    // The first heartbeat, one node of three: not judged until every live node has had time to be heard.
    view.ingest(hb('replica-0', { role: 'leader' }));
    clock.advance(view.staleAfterMs - 100);
    await expect(settle(router.execute({ ...write(), durability: { replicas: 3 } }), clock)).resolves.toMatchObject({ lsn: '11' });
    view.ingest(hb('replica-0', { role: 'leader' }));
    view.ingest(hb('replica-1'));
    clock.advance(60_000); // replica-2 was heard a minute ago: down, but still one of the cluster
    view.ingest(hb('replica-2'));
    clock.advance(60_000);
    view.ingest(hb('replica-0', { role: 'leader' }));
    view.ingest(hb('replica-1'));
    requester.sent.length = 0;
    const err = await failure(router.execute({ ...write('k'), durability: { replicas: 4 } }), clock);
    expect(err.code).toBe(ErrorCode.NOT_ENOUGH_REPLICAS);
    expect(err.message).toMatch(/needs 4 copies, but 3 replicas are known \(replica-0, replica-1, replica-2\); nothing was applied/);
    expect(err.committed).toBe(false);
    expect(requester.sent).toEqual([]);
    await expect(settle(router.execute({ ...write(), durability: { replicas: 3 } }), clock)).resolves.toMatchObject({ lsn: '11' });
  });

  it('retries no-responders with doubling backoff capped at 500 ms until the budget is spent', async () => {
    const { clock, requester, router } = setup();
    const err = await failure(router.execute(write()), clock);
    expect(err.code).toBe(ErrorCode.NO_LEADER);
    expect(err.message).toMatch(/not applied/);
    const gaps = requester.sent.slice(1).map((s, i) => s.at - requester.sent[i].at);
    expect(gaps.slice(0, 5)).toEqual([50, 100, 200, 400, 500]);
    expect(Math.max(...gaps)).toBe(WRITE_RETRY_MAX_DELAY_MS);
    // No attempt is sent with less than WRITE_ATTEMPT_MIN_MS left: it could only time out.
    expect(requester.sent[requester.sent.length - 1].at).toBeLessThanOrEqual(REQUEST_TIMEOUT_MS - WRITE_ATTEMPT_MIN_MS);
    expect(requester.sent[requester.sent.length - 1].timeoutMs).toBeGreaterThanOrEqual(WRITE_ATTEMPT_MIN_MS);
  });

  it('a keyed write whose first attempt may have run is never reported "not applied", whatever the later attempts hear', async () => {
    const { clock, requester, router } = setup();
    let n = 0;
    // The first attempt's fate is unknown (a connection lost after it was sent); every later one finds nobody.
    requester.answer = () => (++n === 1 ? new RequestFailure(RequestFailureKind.OTHER, 'connection lost') : new RequestFailure(RequestFailureKind.NO_RESPONDERS, 'no responders'));
    const err = await failure(router.execute(write('k')), clock);
    expect(err.code).toBe(ErrorCode.NO_LEADER);
    expect(err.message).not.toMatch(/not applied/);
    expect(err.message).toMatch(/may have been applied; retry with the same idempotencyKey/);
  });

  it('succeeds once a leader appears during the retries', async () => {
    const { clock, requester, router } = setup();
    requester.answer = () => (clock.monotonic() < 300 ? new RequestFailure(RequestFailureKind.NO_RESPONDERS, 'none') : writeReply('5'));
    expect((await settle(router.execute(write()), clock)).lsn).toBe('5');
    expect(requester.sent.length).toBe(4);
  });

  it('abandons a keyed attempt the moment a leader of a newer epoch appears, and resends it there', async () => {
    const { clock, view } = setup();
    view.ingest(hb('replica-0', { role: 'leader', epoch: 1, leader: 'replica-0' }));
    const sent: { at: number; timeoutMs: number }[] = [];
    const requester: Requester = {
      // The first attempt reached a leader that died with it: no answer until its timeout.
      request: (_subject, _data, timeoutMs) => {
        sent.push({ at: clock.monotonic(), timeoutMs });
        if (sent.length === 1) return new Promise((_resolve, reject) => clock.setTimeout(() => reject(new RequestFailure(RequestFailureKind.TIMEOUT, 't')), timeoutMs));
        return Promise.resolve(encode({ ...writeReply('12'), epoch: 2 }));
      },
    };
    const r = new GatewayRouter({ subjects, view, requester, clock, logger: new MemoryLogger(), requestTimeoutMs: REQUEST_TIMEOUT_MS, readWaitMs: READ_WAIT_MS });
    clock.setTimeout(() => view.ingest(hb('replica-1', { role: 'leader', epoch: 2, leader: 'replica-1' })), 400);
    const reply = await settle(r.execute(write('k')), clock);
    expect(reply).toMatchObject({ lsn: '12', epoch: 2 });
    expect(sent).toHaveLength(2);
    // Resent within a poll interval and the first backoff of the new leader's appearance, not after the timeout.
    expect(sent[1].at).toBeGreaterThanOrEqual(400);
    expect(sent[1].at).toBeLessThanOrEqual(400 + LEADER_CHANGE_POLL_MS + 50 + 10);
  });

  it('does not abandon an attempt without a key (its fate would be unknown), nor a keyed one while no newer leader shows up', async () => {
    const { clock, view } = setup();
    view.ingest(hb('replica-0', { role: 'leader', epoch: 1, leader: 'replica-0' }));
    let calls = 0;
    const requester: Requester = {
      request: () => {
        calls++;
        return new Promise((resolve) => clock.setTimeout(() => resolve(encode(writeReply('13'))), 1000));
      },
    };
    const r = new GatewayRouter({ subjects, view, requester, clock, logger: new MemoryLogger(), requestTimeoutMs: REQUEST_TIMEOUT_MS, readWaitMs: READ_WAIT_MS });
    clock.setTimeout(() => view.ingest(hb('replica-1', { role: 'leader', epoch: 2, leader: 'replica-1' })), 200);
    expect((await settle(r.execute(write()), clock)).lsn).toBe('13');
    expect(calls).toBe(1);
    const keyed = new GatewayRouter({ subjects, view: new ClusterView({ clock }), requester, clock, logger: new MemoryLogger(), requestTimeoutMs: REQUEST_TIMEOUT_MS, readWaitMs: READ_WAIT_MS });
    expect((await settle(keyed.execute(write('k')), clock)).lsn).toBe('13');
    expect(calls).toBe(2);
  });

  it('without a key, does not resend after a timeout (the write may have been applied)', async () => {
    const { clock, requester, router } = setup();
    requester.answer = () => new RequestFailure(RequestFailureKind.TIMEOUT, 'timeout');
    const err = await failure(router.execute(write()), clock);
    expect(err.code).toBe(ErrorCode.NO_LEADER);
    expect(err.message).toMatch(/may or may not have been applied/);
    expect(requester.sent).toHaveLength(1);
  });

  it('without a key, reports NOT_LEADER at once; with a key, retries it', async () => {
    const { clock, requester, router } = setup();
    let refusals = 0;
    requester.answer = () => (refusals++ < 2 ? errorReply({ code: ErrorCode.NOT_LEADER, message: 'not me' }) : writeReply('9'));
    expect((await failure(router.execute(write()), clock)).code).toBe(ErrorCode.NOT_LEADER);
    expect(requester.sent).toHaveLength(1);
    expect((await settle(router.execute(write('key')), clock)).lsn).toBe('9');
    expect(requester.sent).toHaveLength(3);
  });

  it('with a key, retries a LEASE_EXPIRED refusal (the old leader during a failover)', async () => {
    const { clock, requester, router } = setup();
    let refusals = 0;
    requester.answer = () => (refusals++ < 1 ? errorReply({ code: ErrorCode.LEASE_EXPIRED, message: 'lease lapsed' }) : writeReply('4'));
    expect((await settle(router.execute(write('key')), clock)).lsn).toBe('4');
    expect(requester.sent).toHaveLength(2);
  });

  it('without a key, a refusal of a write that had committed says it may have been applied, and is not retried', async () => {
    const { clock, requester, router } = setup();
    requester.answer = () => errorReply({ code: ErrorCode.LEASE_EXPIRED, message: 'the lease ran out while the write committed; it is not acknowledged', committed: true });
    const err = await failure(router.execute(write()), clock);
    expect(err.code).toBe(ErrorCode.LEASE_EXPIRED);
    expect(err.message).toMatch(/may have been applied: send an idempotencyKey/);
    expect(err.message).not.toMatch(/retry with the same idempotencyKey/);
    expect(requester.sent).toHaveLength(1);
    // With a key, the same kind of refusal tells it to retry with that key.
    requester.answer = () => errorReply({ code: ErrorCode.NOT_ENOUGH_REPLICAS, message: 'not acknowledged: no sync follower', committed: true });
    expect((await failure(router.execute(write('k2')), clock)).message).toBe('not acknowledged: no sync follower: retry with the same idempotencyKey');
    // A refusal of a write that never ran keeps its words.
    requester.answer = () => errorReply({ code: ErrorCode.NOT_LEADER, message: 'not the leader' });
    expect((await failure(router.execute(write()), clock)).message).toBe('not the leader');
  });

  it('never retries other error codes, keyed or not', async () => {
    const { clock, requester, router } = setup();
    requester.answer = () => errorReply({ code: ErrorCode.CONSTRAINT, message: 'UNIQUE constraint failed' });
    expect((await failure(router.execute(write('key')), clock)).code).toBe(ErrorCode.CONSTRAINT);
    expect(requester.sent).toHaveLength(1);
  });

  it('reports a malformed reply as INTERNAL', async () => {
    const { clock, requester, router } = setup();
    requester.answer = () => ({ type: 'write-reply', v: 1, lsn: 12, epoch: 1, results: [] });
    const err = await failure(router.execute(write()), clock);
    expect(err.code).toBe(ErrorCode.INTERNAL);
    expect(err.message).toMatch(/bad reply from the leader: lsn must be a decimal string/);
  });
});

describe('GatewayRouter.query', () => {
  function cluster() {
    const s = setup();
    s.view.ingest(hb('replica-0', { role: 'leader', lsn: '20', appliedLsn: '20' }));
    s.view.ingest(hb('replica-1', { appliedLsn: '15', lagMs: 80 }));
    s.view.ingest(hb('replica-2', { appliedLsn: '18', lagMs: 5 }));
    s.requester.answer = (subject) => queryReply(subject.split('.').pop() ?? '');
    return s;
  }
  const nodesAsked = (r: FakeRequester) => r.sent.map((s) => s.subject.split('.').pop());

  it('strong: asks the leader with requireLeader', async () => {
    const { clock, requester, router } = cluster();
    expect((await settle(router.query(read({ consistency: 'strong' })), clock)).servedBy).toBe('replica-0');
    expect(requester.sent[0].message).toEqual({ type: 'query', v: 1, sql: 'SELECT a FROM t', requireLeader: true });
  });

  it('strong with minLsn: the leader gets minLsn, so it checks it (monotonic reads across a failover)', async () => {
    const { clock, requester, router } = cluster();
    await settle(router.query(read({ consistency: 'strong', minLsn: '12' })), clock);
    expect(requester.sent[0].message).toEqual({ type: 'query', v: 1, sql: 'SELECT a FROM t', requireLeader: true, minLsn: '12' });
  });

  it('strong: NO_LEADER when no leader is known or it does not answer', async () => {
    const { clock, requester, router, view } = setup();
    expect((await failure(router.query(read({ consistency: 'strong' })), clock)).code).toBe(ErrorCode.NO_LEADER);
    view.ingest(hb('replica-0', { role: 'leader' }));
    expect((await failure(router.query(read({ consistency: 'strong' })), clock)).code).toBe(ErrorCode.NO_LEADER);
    expect(requester.sent).toHaveLength(1);
  });

  it('any: round-robins, and tries another node when one does not answer', async () => {
    const { clock, requester, router } = cluster();
    for (let i = 0; i < 3; i++) await settle(router.query(read()), clock);
    expect(nodesAsked(requester)).toEqual(['replica-0', 'replica-1', 'replica-2']);
    requester.sent.length = 0;
    requester.answer = (subject) => (subject.endsWith('replica-0') ? new RequestFailure(RequestFailureKind.NO_RESPONDERS, 'gone') : queryReply('replica-1'));
    expect((await settle(router.query(read()), clock)).servedBy).toBe('replica-1');
    expect(nodesAsked(requester)).toEqual(['replica-0', 'replica-1']);
  });

  it('any: NO_REPLICA when no node can serve or none answers', async () => {
    const empty = setup();
    expect((await failure(empty.router.query(read()), empty.clock)).code).toBe(ErrorCode.NO_REPLICA);
    const { clock, requester, router } = cluster();
    requester.answer = () => new RequestFailure(RequestFailureKind.NO_RESPONDERS, 'gone');
    expect((await failure(router.query(read()), clock)).code).toBe(ErrorCode.NO_REPLICA);
    expect(new Set(nodesAsked(requester)).size).toBe(3);
  });

  it('any: tries another node when one answers UNAVAILABLE (starting or seeding)', async () => {
    const { clock, requester, router } = cluster();
    requester.answer = (subject) =>
      subject.endsWith('replica-0') ? errorReply({ code: ErrorCode.UNAVAILABLE, message: 'replica-0 is seeding' }) : queryReply(subject.split('.').pop() ?? '');
    const served = (await settle(router.query(read()), clock)).servedBy;
    expect(nodesAsked(requester)).toEqual(['replica-0', served]);
    expect(served).not.toBe('replica-0');
  });

  it('passes replica errors through (WRITE_IN_QUERY) without trying another node', async () => {
    const { clock, requester, router } = cluster();
    requester.answer = () => errorReply({ code: ErrorCode.WRITE_IN_QUERY, message: 'writes are refused here' });
    expect((await failure(router.query(read({ sql: 'DELETE FROM t' })), clock)).code).toBe(ErrorCode.WRITE_IN_QUERY);
    expect(requester.sent).toHaveLength(1);
  });

  it('bounded: only nodes within maxLagMs', async () => {
    const { clock, requester, router } = cluster();
    for (let i = 0; i < 4; i++) await settle(router.query(read({ consistency: 'bounded', maxLagMs: 10 })), clock);
    expect(new Set(nodesAsked(requester))).toEqual(new Set(['replica-0', 'replica-2']));
  });

  it('bounded: the node is sent the bound and checks it itself; one that cannot vouch for it sends the read on', async () => {
    const { clock, requester, router } = cluster();
    // replica-2 looked fresh in its last heartbeat, but cannot prove it when asked.
    requester.answer = (subject) =>
      subject.endsWith('replica-2') ? errorReply({ code: ErrorCode.TIMEOUT, message: 'replica-2 is known to be current only as of 400 ms ago' }) : queryReply(subject.split('.').pop() ?? '');
    const served = new Set<string>();
    for (let i = 0; i < 4; i++) served.add((await settle(router.query(read({ consistency: 'bounded', maxLagMs: 10 })), clock)).servedBy);
    expect(served).toEqual(new Set(['replica-0']));
    expect(requester.sent.every((s) => s.message.maxLagMs === 10)).toBe(true);
    expect(nodesAsked(requester)).toContain('replica-2');
  });

  it('read-your-writes: a caught-up follower, asked to wait for minLsn', async () => {
    const { clock, requester, router } = cluster();
    expect((await settle(router.query(read({ consistency: 'read-your-writes', minLsn: '16' })), clock)).servedBy).toBe('replica-2');
    expect(requester.sent[0].message).toEqual({ type: 'query', v: 1, sql: 'SELECT a FROM t', minLsn: '16', waitMs: READ_WAIT_MS });
  });

  it('read-your-writes: falls back to the leader on TIMEOUT, NO_REPLICA or silence', async () => {
    for (const refusal of [
      errorReply({ code: ErrorCode.TIMEOUT, message: 'lsn 19 not applied within 300 ms' }),
      errorReply({ code: ErrorCode.NO_REPLICA, message: 'no replica' }),
      errorReply({ code: ErrorCode.UNAVAILABLE, message: 'replica-2 is seeding' }),
      new RequestFailure(RequestFailureKind.TIMEOUT, 'silent'),
    ]) {
      const { clock, requester, router } = cluster();
      requester.answer = (subject) => (subject.endsWith('replica-0') ? queryReply('replica-0', '20') : refusal);
      const reply = await settle(router.query(read({ consistency: 'read-your-writes', minLsn: '19' })), clock);
      expect(reply.servedBy).toBe('replica-0');
      expect(nodesAsked(requester)).toEqual(['replica-2', 'replica-0']);
      expect(requester.sent[0].timeoutMs).toBeLessThan(REQUEST_TIMEOUT_MS);
      expect(requester.sent[1].message).toMatchObject({ minLsn: '19' });
    }
  });

  it('read-your-writes: other errors are not hidden by the fallback', async () => {
    const { clock, requester, router } = cluster();
    requester.answer = () => errorReply({ code: ErrorCode.SQL_ERROR, message: 'no such column: b' });
    expect((await failure(router.query(read({ consistency: 'read-your-writes', minLsn: '19' })), clock)).code).toBe(ErrorCode.SQL_ERROR);
    expect(requester.sent).toHaveLength(1);
  });

  it('sends QueryRequest fields only when given', async () => {
    const { clock, requester, router } = cluster();
    await settle(router.query(read({ params: { a: { $b: 'AA==' } } })), clock);
    const sent = requester.sent[0].message as unknown as QueryRequest;
    expect(sent).toEqual({ type: 'query', v: 1, sql: 'SELECT a FROM t', params: { a: { $b: 'AA==' } } });
    expect((requester.sent[0].message as unknown as WriteRequest).idempotencyKey).toBeUndefined();
  });
});
