import { encode, PROTOCOL_VERSION, subjectsFor } from '@flotilla/protocol';
import { LocalFirstRequester, LocalNode } from './local-first-requester';
import { RequestFailure, RequestFailureKind, Requester } from './requester';

const subjects = subjectsFor('unit');
const reply = encode({ type: 'write-reply', v: PROTOCOL_VERSION, lsn: '7', epoch: 1, results: [] });
const remoteReply = encode({ type: 'remote' });

function setup(local: LocalNode) {
  const remote = { sent: [] as string[] } as Requester & { sent: string[] };
  remote.request = async (subject: string) => {
    remote.sent.push(subject);
    return remoteReply;
  };
  return { remote, requester: new LocalFirstRequester(remote, subjects.write, local) };
}

describe('LocalFirstRequester', () => {
  it('runs a write on this node while it leads, without asking NATS', async () => {
    const writes: Uint8Array[] = [];
    const { remote, requester } = setup({ localWrite: (d) => (writes.push(d), Promise.resolve(reply)) });
    const data = encode({ type: 'write' });
    await expect(requester.request(subjects.write, data, 1000)).resolves.toBe(reply);
    expect(writes).toEqual([data]);
    expect(remote.sent).toEqual([]);
  });

  it('sends a write to the leader by NATS when this node does not lead', async () => {
    const { remote, requester } = setup({ localWrite: () => null });
    await expect(requester.request(subjects.write, encode({ type: 'write' }), 1000)).resolves.toBe(remoteReply);
    expect(remote.sent).toEqual([subjects.write]);
  });

  it('never runs anything but a write locally', async () => {
    let asked = 0;
    const { remote, requester } = setup({ localWrite: () => (asked++, Promise.resolve(reply)) });
    await expect(requester.request(subjects.read('replica-0'), encode({ type: 'query' }), 1000)).resolves.toBe(remoteReply);
    expect(asked).toBe(0);
    expect(remote.sent).toEqual([subjects.read('replica-0')]);
  });

  it('fails a local write that is not answered in time as TIMEOUT (fate unknown)', async () => {
    jest.useFakeTimers();
    try {
      const { requester } = setup({ localWrite: () => new Promise<Uint8Array>(() => undefined) });
      const p = requester.request(subjects.write, encode({ type: 'write' }), 50);
      jest.advanceTimersByTime(50);
      await expect(p).rejects.toMatchObject({ kind: RequestFailureKind.TIMEOUT });
    } finally {
      jest.useRealTimers();
    }
  });

  it('reports a local write that threw as a failure of unknown fate, not as an answer', async () => {
    const { requester } = setup({ localWrite: () => Promise.reject(new Error('disk gone')) });
    const err = await requester.request(subjects.write, encode({ type: 'write' }), 1000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RequestFailure);
    expect(err).toMatchObject({ kind: RequestFailureKind.OTHER, neverDelivered: false });
    expect((err as Error).message).toMatch(/disk gone/);
  });
});
