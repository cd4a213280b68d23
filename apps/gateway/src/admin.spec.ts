import { FakeClock, MemoryLogger } from '@flotilla/logging';
import { decodeEnvelope, encode, ErrorCode, errorReply, FlotillaError, Heartbeat, PROTOCOL_VERSION, subjectsFor } from '@flotilla/protocol';
import { ClusterView } from '../../../libs/replication/src/cluster-view';
import { Admin, SWITCHOVER_REPLY_MARGIN_MS, SWITCHOVER_TIMEOUT_MS } from './admin';
import { RequestFailure, RequestFailureKind, Requester } from './requester';

const subjects = subjectsFor('unit');

class FakeRequester implements Requester {
  readonly sent: { subject: string; message: Record<string, unknown>; timeoutMs: number }[] = [];
  answer: (subject: string, message: Record<string, unknown>) => unknown = () => new RequestFailure(RequestFailureKind.NO_RESPONDERS, 'no responders');
  async request(subject: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    const message = decodeEnvelope(data);
    this.sent.push({ subject, message, timeoutMs });
    const a = this.answer(subject, message);
    if (a instanceof RequestFailure) throw a;
    return encode(a);
  }
}

function hb(node: string, role: Heartbeat['role'] = 'follower'): Heartbeat {
  return { type: 'hb', v: 1, node, role, epoch: 4, leader: 'replica-0', lsn: '10', appliedLsn: '10', flushedLsn: '10', lagMs: 0, sync: false, mode: 'async', logFormat: 'logical', version: 't', ts: 0 };
}

function setup(nodes: Heartbeat[] = [hb('replica-0', 'leader'), hb('replica-1'), hb('replica-2')]) {
  const view = new ClusterView({ clock: new FakeClock() });
  for (const n of nodes) view.ingest(n);
  const requester = new FakeRequester();
  const admin = new Admin({ subjects, view, requester, logger: new MemoryLogger() });
  return { admin, requester };
}

async function failure(p: Promise<unknown>): Promise<FlotillaError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof FlotillaError) return err;
    throw err;
  }
  throw new Error('expected a FlotillaError');
}

const txn = (node: string, lsn: string) => ({ node, lsn, epoch: 3, ts: 1, discardedAt: 2, changes: [{ op: 'ins', t: 't', rid: '1', row: [1] }], cols: { t: ['a'] } });

describe('Admin.switchover', () => {
  it('asks the leader on its control subject and returns its answer', async () => {
    const { admin, requester } = setup();
    requester.answer = () => ({ type: 'switchover-reply', v: PROTOCOL_VERSION, from: 'replica-0', to: 'replica-1', epoch: 5, lsn: '10' });
    expect(await admin.switchover('replica-1')).toEqual({ from: 'replica-0', to: 'replica-1', epoch: 5, lsn: '10' });
    expect(requester.sent).toEqual([
      { subject: subjects.control('replica-0'), message: { type: 'switchover', v: 1, to: 'replica-1', timeoutMs: SWITCHOVER_TIMEOUT_MS }, timeoutMs: SWITCHOVER_TIMEOUT_MS + SWITCHOVER_REPLY_MARGIN_MS },
    ]);
  });

  it('passes the leader\'s refusal through with its code', async () => {
    const { admin, requester } = setup();
    requester.answer = () => errorReply({ code: ErrorCode.TIMEOUT, message: 'replica-1 did not catch up in 10000 ms' });
    const e = await failure(admin.switchover('replica-1'));
    expect(e.code).toBe(ErrorCode.TIMEOUT);
    expect(e.message).toBe('replica-1 did not catch up in 10000 ms');
  });

  it('refuses an unknown target, the current leader, and a cluster without a leader', async () => {
    const { admin, requester } = setup();
    expect((await failure(admin.switchover('replica-9'))).message).toBe('invalid request: "replica-9" is not a known replica (known: replica-0, replica-1, replica-2)');
    expect((await failure(admin.switchover('replica-0'))).code).toBe(ErrorCode.CONFLICT);
    expect(requester.sent).toHaveLength(0);
    const leaderless = setup([hb('replica-1'), hb('replica-2')]);
    expect((await failure(leaderless.admin.switchover('replica-1'))).code).toBe(ErrorCode.NO_LEADER);
  });

  it('maps a silent leader to TIMEOUT and a missing one to UNAVAILABLE (both 503)', async () => {
    const { admin, requester } = setup();
    requester.answer = () => new RequestFailure(RequestFailureKind.TIMEOUT, 'timeout');
    expect((await failure(admin.switchover('replica-1'))).code).toBe(ErrorCode.TIMEOUT);
    requester.answer = () => new RequestFailure(RequestFailureKind.NO_RESPONDERS, 'none');
    expect((await failure(admin.switchover('replica-1'))).code).toBe(ErrorCode.UNAVAILABLE);
  });

  it('reports a malformed answer as INTERNAL', async () => {
    const { admin, requester } = setup();
    requester.answer = () => ({ type: 'switchover-reply', v: 1, from: 'replica-0', to: 'replica-1', epoch: 5, lsn: 10 });
    expect((await failure(admin.switchover('replica-1'))).code).toBe(ErrorCode.INTERNAL);
  });
});

describe('Admin.discarded', () => {
  it('merges every replica\'s quarantine by LSN and lists the ones that did not answer', async () => {
    const { admin, requester } = setup();
    requester.answer = (subject) => {
      if (subject.endsWith('replica-0')) return { type: 'discarded-reply', v: 1, node: 'replica-0', transactions: [txn('replica-0', '12'), txn('replica-0', '9')] };
      if (subject.endsWith('replica-1')) return { type: 'discarded-reply', v: 1, node: 'replica-1', transactions: [txn('replica-1', '10')] };
      return new RequestFailure(RequestFailureKind.TIMEOUT, 'timeout');
    };
    const r = await admin.discarded();
    expect(r.discarded.map((t) => [t.node, t.lsn])).toEqual([
      ['replica-0', '9'],
      ['replica-1', '10'],
      ['replica-0', '12'],
    ]);
    expect(r.unavailable).toEqual([{ node: 'replica-2', reason: 'timeout' }]);
    expect(requester.sent.map((s) => s.message)).toEqual([0, 1, 2].map(() => ({ type: 'discarded', v: 1 })));
  });

  it('counts an error answer or a malformed one as unavailable, not as a failure of the whole request', async () => {
    const { admin, requester } = setup();
    requester.answer = (subject) =>
      subject.endsWith('replica-0')
        ? errorReply({ code: ErrorCode.BAD_REQUEST, message: 'unknown control type discarded' })
        : subject.endsWith('replica-1')
          ? { type: 'discarded-reply', v: 1, transactions: 'none' }
          : { type: 'discarded-reply', v: 1, node: 'replica-2', transactions: [] };
    const r = await admin.discarded();
    expect(r.discarded).toEqual([]);
    expect(r.unavailable).toEqual([
      { node: 'replica-0', reason: 'BAD_REQUEST: unknown control type discarded' },
      { node: 'replica-1', reason: 'transactions of replica-1 must be an array' },
    ]);
  });
});
