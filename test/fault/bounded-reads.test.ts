/**
 * Bounded reads when the leader goes quiet without dying: a leader cut off from NATS (its TCP proxy
 * blackholed) keeps acknowledging async writes to its own API for as long as its lease lasts. The
 * followers hear nothing new, yet still get read requests. A follower may serve a bounded read only
 * while it can prove it is within maxLagMs of the leader; the time since it last heard from the
 * leader is not proof, so "silent for less than two heartbeats" must not count as current.
 *
 * The reads go straight to the follower's `read.<node>` subject, so this checks the replica's own
 * guard, not the gateway's choice of replica.
 *
 * After the heal nobody writes: the entries the followers missed were lost with the old
 * connection, and no later entry will show them the gap. The leader's heartbeats must.
 */
import type { NatsConnection } from 'nats';
import { LocalCluster } from '@flotilla/local-cluster';
import { decodeEnvelope, encode, PROTOCOL_VERSION, subjectsFor } from '@flotilla/protocol';
import { httpJson, startLocalCluster, startNatsServer, stopAll, TcpProxy, waitFor } from '@flotilla/testing';
import { natsClient } from '../integration/support';

jest.setTimeout(120_000);

const MAX_LAG_MS = 200;

let nc: NatsConnection | undefined;
afterEach(async () => {
  await nc?.close();
  nc = undefined;
  await stopAll();
});

interface ReadAnswer {
  startMs: number;
  ok: boolean;
  lsn?: bigint;
  code?: string;
  message?: string;
}

async function boundedRead(conn: NatsConnection, cluster: LocalCluster, node: string, maxLagMs: number): Promise<ReadAnswer> {
  const startMs = performance.now();
  const msg = await conn.request(
    subjectsFor(cluster.clusterName).read(node),
    encode({ type: 'query', v: PROTOCOL_VERSION, sql: 'SELECT count(*) AS n FROM t', maxLagMs }),
    { timeout: 2000 },
  );
  const m = decodeEnvelope(msg.data);
  if (m.type === 'query-reply') return { startMs, ok: true, lsn: BigInt(m.lsn as string) };
  const err = m.error as { code: string; message: string };
  return { startMs, ok: false, code: err.code, message: err.message };
}

test('a follower that cannot hear the leader stops serving bounded reads once it may be more than maxLagMs behind; healed, it catches up with no further write', async () => {
  const natsServer = await startNatsServer({ jetstream: true });
  const proxies = new Map<string, TcpProxy>();
  for (const name of ['replica-0', 'replica-1', 'replica-2']) proxies.set(name, await TcpProxy.start(natsServer.port));
  const { cluster } = await startLocalCluster({
    replicas: 3,
    monitor: false,
    restart: false,
    natsUrl: natsServer.url,
    natsUrlFor: (name: string) => proxies.get(name)?.natsUrl,
    replicaEnv: { FLOTILLA_MODE: 'async' },
  });
  await cluster.waitUntilReady();
  nc = await natsClient(cluster.natsUrl);
  const leader = await waitFor(async () => {
    const v = (await httpJson('GET', `${cluster.gatewayUrl}/v1/cluster`)).body;
    return v?.leader && v.nodes.filter((n: { healthy: boolean }) => n.healthy).length === 3 ? (v.leader as string) : null;
  }, { what: 'a leader and 3 healthy nodes', timeoutMs: 30_000 });
  const follower = cluster.replicaNames.find((n) => n !== leader)!;
  const leaderApi = cluster.apiUrl(leader);
  expect((await httpJson('POST', `${leaderApi}/v1/execute`, { statements: [{ sql: 'CREATE TABLE t(k INTEGER PRIMARY KEY)' }] })).status).toBe(200);

  // Writes to the leader's own API, with the time each was acknowledged (the reads' clock).
  const acks: { atMs: number; lsn: bigint }[] = [];
  let writing = true;
  const writer = (async () => {
    for (let k = 1; writing; k++) {
      const w = await httpJson('POST', `${leaderApi}/v1/execute`, { statements: [{ sql: 'INSERT INTO t(k) VALUES (?)', params: [k] }] });
      if (w.status === 200) acks.push({ atMs: performance.now(), lsn: BigInt(w.body.lsn) });
    }
  })();
  // The follower is current while the leader is heard: bounded reads are served.
  await waitFor(async () => (await boundedRead(nc!, cluster, follower, MAX_LAG_MS)).ok && acks.length > 50, { what: 'the follower serving bounded reads under writes' });

  proxies.get(leader)!.blackhole();
  const cutMs = performance.now();
  const stale: unknown[] = [];
  const strict: ReadAnswer[] = [];
  const loose: ReadAnswer[] = [];
  // Until the leader's lease runs out (leaseTtlMs 1500): it acknowledges writes nobody else gets.
  while (performance.now() < cutMs + 900) {
    const r = await boundedRead(nc, cluster, follower, MAX_LAG_MS);
    strict.push(r);
    if (r.ok) {
      const mustSee = acks.filter((a) => a.atMs < r.startMs - MAX_LAG_MS).reduce((m, a) => (a.lsn > m ? a.lsn : m), 0n);
      if (r.lsn! < mustSee) stale.push({ msAfterCut: Math.round(r.startMs - cutMs), lsn: String(r.lsn), mustSee: String(mustSee) });
    }
    loose.push(await boundedRead(nc, cluster, follower, 60_000));
  }
  writing = false;
  await writer;
  const acksAfterCut = acks.filter((a) => a.atMs > cutMs);
  // eslint-disable-next-line no-console
  console.log(`after the cut: ${acksAfterCut.length} writes acknowledged by the cut-off leader; strict reads served ${strict.filter((r) => r.ok).length} of ${strict.length}, the last at ${Math.round(Math.max(0, ...strict.filter((r) => r.ok).map((r) => r.startMs - cutMs)))} ms; ${stale.length} stale`);

  // The leader did acknowledge writes the follower never got: there was something to miss.
  expect(acksAfterCut.length).toBeGreaterThan(10);
  expect(stale).toEqual([]);
  // The follower kept answering (a generous bound is served from its old data)...
  expect(loose.every((r) => r.ok)).toBe(true);
  expect(loose[loose.length - 1].lsn!).toBeLessThan(acksAfterCut[acksAfterCut.length - 1].lsn);
  // ...and refused the strict bound, saying why, from at most maxLagMs after the cut on.
  const late = strict.filter((r) => r.startMs > cutMs + MAX_LAG_MS + 50);
  expect(late.length).toBeGreaterThan(0);
  for (const r of late) expect(r).toMatchObject({ ok: false, code: 'TIMEOUT', message: expect.stringMatching(/known to be current only as of \d+ ms ago/) });

  // Healed, and no write since: nothing on the stream reveals what the followers missed. They
  // learn it from the leader's heartbeats, fetch it, and serve bounded reads again, current.
  proxies.get(leader)!.heal();
  const last = acks[acks.length - 1].lsn;
  for (const node of cluster.replicaNames.filter((n) => n !== leader)) {
    await waitFor(async () => {
      const r = await boundedRead(nc!, cluster, node, MAX_LAG_MS);
      if (r.ok && r.lsn! >= last) return true;
      throw new Error(`${node}: ${JSON.stringify({ ...r, lsn: String(r.lsn) })}`);
    }, { what: `${node} caught up to LSN ${last} and serving bounded reads after the heal, with no write since`, timeoutMs: 15_000 });
  }
});
