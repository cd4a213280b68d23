/**
 * The gateway's request/reply over a real nats-server: its own inbox multiplexing (one wildcard
 * subscription, one sweep timer) must keep the Requester contract — each reply to its own request,
 * no responders told apart from a timeout, nothing resolved after its deadline, nothing left
 * pending after close.
 */
import { connect, NatsConnection } from 'nats';
import { MemoryLogger, systemClock } from '@flotilla/logging';
import { subjectsFor } from '@flotilla/protocol';
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
