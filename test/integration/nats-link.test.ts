/**
 * The gateway's request/reply over a real nats-server: its own inbox multiplexing (one wildcard
 * subscription, one sweep timer) must keep the Requester contract — each reply to its own request,
 * no responders told apart from a timeout, nothing resolved after its deadline, nothing left
 * pending after close.
 */
import { connect, NatsConnection } from 'nats';
import { MemoryLogger, systemClock } from '@flotilla/logging';
import { decodeBatchFrame, encodeBatchFrame, isBatchFrame, subjectsFor } from '@flotilla/protocol';
import { ClusterView } from '@flotilla/replication';
import { startNatsServer, stopAll } from '@flotilla/testing';
import type { NatsServer } from '@flotilla/local-cluster';
import { NatsLink } from '../../apps/gateway/src/nats-link';
import { RequestFailure, RequestFailureKind } from '../../apps/gateway/src/requester';

let nats: NatsServer;
let responder: NatsConnection;
let link: NatsLink;
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

beforeAll(async () => {
  nats = await startNatsServer();
  responder = await connect({ servers: nats.url });
  // Echo, after a delay given in the request ("<delay>:<text>"); "never" is never answered.
  responder.subscribe('t.echo', {
    callback: (_err, m) => {
      const [delay, text] = dec(m.data).split(':');
      if (delay === 'never') return;
      setTimeout(() => m.respond(enc(`re:${text}`)), Number(delay));
    },
  });
  await responder.flush();
  link = new NatsLink({ natsUrl: nats.url, subjects: subjectsFor('linktest'), view: new ClusterView({ clock: systemClock }), logger: new MemoryLogger({ app: 'gateway' }) });
  await link.start();
});

afterAll(async () => {
  await link.close();
  await responder.close();
  await stopAll();
});

async function failureOf(p: Promise<unknown>): Promise<RequestFailure> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(RequestFailure);
    return e as RequestFailure;
  }
  throw new Error('expected the request to fail');
}

test('each of 500 concurrent requests gets its own reply', async () => {
  const replies = await Promise.all(Array.from({ length: 500 }, (_, i) => link.request('t.echo', enc(`${i % 7}:${i}`), 5000)));
  expect(replies.map(dec)).toEqual(Array.from({ length: 500 }, (_, i) => `re:${i}`));
});

test('nobody subscribed: NO_RESPONDERS at once, never delivered', async () => {
  const t0 = performance.now();
  const f = await failureOf(link.request('t.nobody', enc('x'), 5000));
  expect(f.kind).toBe(RequestFailureKind.NO_RESPONDERS);
  expect(f.neverDelivered).toBe(true);
  expect(performance.now() - t0).toBeLessThan(4000);
});

test('no reply: TIMEOUT after the deadline; a reply after the deadline does not count', async () => {
  const t0 = performance.now();
  const never = await failureOf(link.request('t.echo', enc('never:x'), 200));
  expect(never.kind).toBe(RequestFailureKind.TIMEOUT);
  expect(never.neverDelivered).toBe(false);
  expect(performance.now() - t0).toBeGreaterThanOrEqual(199);
  const late = await failureOf(link.request('t.echo', enc('400:late'), 150));
  expect(late.kind).toBe(RequestFailureKind.TIMEOUT);
  // The late reply arrives afterwards and is dropped; the link still works.
  await new Promise((r) => setTimeout(r, 300));
  expect(dec(await link.request('t.echo', enc('0:after'), 2000))).toBe('re:after');
});

test('close fails what is pending and refuses new requests as not connected', async () => {
  const other = new NatsLink({ natsUrl: nats.url, subjects: subjectsFor('linktest'), view: new ClusterView({ clock: systemClock }), logger: new MemoryLogger({ app: 'gateway' }) });
  await other.start();
  const pending = failureOf(other.request('t.echo', enc('never:x'), 10_000));
  await other.close();
  expect((await pending).kind).toBe(RequestFailureKind.OTHER);
  expect((await failureOf(other.request('t.echo', enc('0:x'), 1000))).kind).toBe(RequestFailureKind.NOT_CONNECTED);
});

describe('batch subjects: concurrent requests share frames', () => {
  let batching: NatsLink;
  /** Items per message the frame responder received (1 for a plain message). */
  const seen: number[] = [];

  beforeAll(async () => {
    // Answers each frame in two frames, in reverse order, echoing the items; "never" items not at all.
    responder.subscribe('t.frame', {
      callback: (_err, m) => {
        if (!isBatchFrame(m.data)) {
          seen.push(1);
          m.respond(enc(`re:${dec(m.data)}`));
          return;
        }
        const items = decodeBatchFrame(m.data).filter((it) => dec(it.data) !== 'never');
        seen.push(items.length);
        const replies = items.reverse().map((it) => ({ id: it.id, data: enc(`re:${dec(it.data)}`) }));
        const half = Math.ceil(replies.length / 2);
        for (const part of [replies.slice(0, half), replies.slice(half)]) if (part.length > 0) m.respond(encodeBatchFrame(part));
      },
    });
    // Refuses any frame as a whole with one plain answer, as a leader that cannot read it would.
    responder.subscribe('t.refuse', { callback: (_err, m) => m.respond(enc('refused')) });
    await responder.flush();
    batching = new NatsLink({
      natsUrl: nats.url,
      subjects: subjectsFor('linktest'),
      view: new ClusterView({ clock: systemClock }),
      logger: new MemoryLogger({ app: 'gateway' }),
      batchSubjects: ['t.frame', 't.refuse', 't.nobody'],
    });
    await batching.start();
  });

  afterAll(() => batching.close());

  test('each of 500 concurrent requests gets its own reply, and they travel in frames', async () => {
    seen.length = 0;
    const replies = await Promise.all(Array.from({ length: 500 }, (_, i) => batching.request('t.frame', enc(`${i}`), 5000)));
    expect(replies.map(dec)).toEqual(Array.from({ length: 500 }, (_, i) => `re:${i}`));
    expect(seen.reduce((a, b) => a + b, 0)).toBe(500);
    expect(Math.max(...seen)).toBeGreaterThan(1);
    expect(seen.length).toBeLessThan(500);
  });

  test('an item left unanswered in a frame times out alone; its neighbours are answered', async () => {
    const results = await Promise.allSettled(['a', 'never', 'b'].map((t) => batching.request('t.frame', enc(t), 300).then(dec)));
    expect(results[0]).toEqual({ status: 'fulfilled', value: 're:a' });
    expect(results[2]).toEqual({ status: 'fulfilled', value: 're:b' });
    expect(results[1].status).toBe('rejected');
    expect(((results[1] as PromiseRejectedResult).reason as RequestFailure).kind).toBe(RequestFailureKind.TIMEOUT);
  });

  test('a frame answered as a whole with a plain message: that answer is every request\'s', async () => {
    const replies = await Promise.all(Array.from({ length: 20 }, () => batching.request('t.refuse', enc('x'), 5000)));
    expect(replies.map(dec)).toEqual(Array.from({ length: 20 }, () => 'refused'));
  });

  test('nobody subscribed to a batch subject: every request of the frame is NO_RESPONDERS', async () => {
    const failures = await Promise.all(Array.from({ length: 20 }, () => failureOf(batching.request('t.nobody', enc('x'), 5000))));
    expect(failures.map((f) => f.kind)).toEqual(Array.from({ length: 20 }, () => RequestFailureKind.NO_RESPONDERS));
  });
});
