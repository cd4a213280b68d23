/**
 * Automatic failover under real faults (`npm run build` first; `npm run test:fault` runs this tier):
 * real nats-server, 3 replicas, 2 failover monitors and the gateway under the local supervisor,
 * continuous keyed client writes, and after every test the history checker over what clients were
 * told and what every replica holds once converged (nothing acknowledged missing, nothing applied
 * twice, one leader per epoch). A killed node is kept down (the supervisor told not to restart it)
 * until the failover under test is over, then started again and must rejoin.
 */
import type { LeaseRecord } from '@flotilla/election';
import { NatsKvLeaser } from '@flotilla/election';
import { httpJson, stopAll, waitFor } from '@flotilla/testing';
import {
  activeMonitor,
  clusterView,
  createHistoryTable,
  FaultCluster,
  firstAckAbove,
  killAndKeepDown,
  logLines,
  MONITORS,
  nowMs,
  rejoined,
  startFaultCluster,
  startHistoryLoad,
  steadyLeader,
  stopLoads,
  verifyHistory,
} from './fault-support';

jest.setTimeout(240_000);

/** Done-when bound: leader kill -9 → first write acknowledged by the new leader. */
const FAILOVER_BOUND_MS = 3000;

let fc: FaultCluster | undefined;
afterEach(async () => {
  await stopLoads();
  fc?.watch.stop();
  await fc?.nc.close();
  fc = undefined;
  await stopAll();
});

async function readLease(f: FaultCluster): Promise<LeaseRecord> {
  const leaser = await NatsKvLeaser.open(f.nc, `flotilla-${f.cluster.clusterName}`, 'leader');
  const r = await leaser.read();
  if (!r) throw new Error('no leader lease');
  return r;
}

function log(message: string): void {
  // eslint-disable-next-line no-console
  console.log(message);
}

test('kill -9 of the leader (semi-sync): a new leader acknowledges within 3 s; nothing acknowledged lost; the old leader rejoins; replicas identical', async () => {
  const f = (fc = await startFaultCluster({ mode: 'semi-sync' }));
  await createHistoryTable(f.cluster);
  const { leader, epoch } = await steadyLeader(f.cluster);
  const load = startHistoryLoad(f.cluster.gatewayUrl, { clients: 4 });
  await waitFor(() => load.acked.length >= 200, { what: '200 acknowledged writes before the kill', timeoutMs: 30_000 });

  const killedAt = nowMs();
  await killAndKeepDown(f.cluster, leader);
  const first = await firstAckAbove(load, epoch, 20_000);
  const failoverMs = first.ackedAtMs - killedAt;
  log(`kill -9 of ${leader} → first write acknowledged in epoch ${first.epoch} after ${Math.round(failoverMs)} ms`);
  expect(failoverMs).toBeLessThanOrEqual(FAILOVER_BOUND_MS);
  const lease = await readLease(f);
  expect(lease.holder).not.toBe(leader);
  expect(lease.epoch).toBe(first.epoch);

  await waitFor(() => load.ackedAbove(epoch).length >= 200, { what: '200 writes on the new leader', timeoutMs: 30_000 });
  await f.cluster.startProcess(leader);
  await rejoined(f, leader, first.epoch);
  const n = load.acked.length;
  await waitFor(() => load.acked.length >= n + 100, { what: '100 writes after the old leader rejoined', timeoutMs: 30_000 });
  await load.stop();

  const report = await verifyHistory(f, load, { label: 'kill -9' });
  expect(report.violations).toEqual([]);
  expect(report.stats.ackedByEpoch[epoch]).toBeGreaterThanOrEqual(200);
  expect(report.stats.leadersByEpoch[first.epoch]).toEqual([lease.holder]);
});

test('SIGTERM of the leader (a rolling restart, semi-sync): it hands over to its most up-to-date follower first; nothing acknowledged lost, nothing rewound', async () => {
  const f = (fc = await startFaultCluster({ mode: 'semi-sync' }));
  await createHistoryTable(f.cluster);
  const { leader, epoch } = await steadyLeader(f.cluster);
  const load = startHistoryLoad(f.cluster.gatewayUrl, { clients: 4 });
  await waitFor(() => load.acked.length >= 200, { what: '200 acknowledged writes before the SIGTERM', timeoutMs: 30_000 });
  await f.cluster.stopProcess(leader); // SIGTERM, as Kubernetes stops a pod
  const first = await firstAckAbove(load, epoch, 20_000);
  const handedOver = logLines(f.cluster, leader).find((l) => l.msg === 'leadership handed over at shutdown');
  expect(handedOver).toBeDefined();
  const lease = await readLease(f);
  expect(lease.holder).toBe(handedOver!.to);
  expect(lease.epoch).toBe(first.epoch);
  await waitFor(() => load.ackedAbove(epoch).length >= 100, { what: '100 writes on the new leader', timeoutMs: 30_000 });
  await f.cluster.startProcess(leader);
  await rejoined(f, leader, first.epoch);
  await load.stop();
  const report = await verifyHistory(f, load, { label: 'SIGTERM' });
  expect(report.violations).toEqual([]);
  expect(report.quarantine.raw).toEqual([]); // a hand-over, not a failover: nothing to rewind
});

test('zombie leader (async): SIGSTOP past its lease, SIGCONT: it acknowledges nothing more, steps down, rewinds into the quarantine; the new epoch loses nothing', async () => {
  const f = (fc = await startFaultCluster({ mode: 'async', proxies: true }));
  await createHistoryTable(f.cluster);
  const { leader, epoch } = await steadyLeader(f.cluster);
  const followers = f.cluster.replicaNames.filter((n) => n !== leader);
  const load = startHistoryLoad(f.cluster.gatewayUrl, { clients: 4 });
  await waitFor(() => load.acked.length >= 200, { what: '200 acknowledged writes', timeoutMs: 30_000 });

  // Unreplicated async writes: the followers are cut off from NATS while the leader acknowledges.
  for (const name of followers) f.proxies.get(name)!.cut();
  const cutAt = load.acked.length;
  await waitFor(() => load.acked.length >= cutAt + 30, { what: '30 writes acknowledged by the leader alone', timeoutMs: 30_000 });
  f.cluster.pause(leader);
  const stoppedAt = nowMs();
  for (const name of followers) f.proxies.get(name)!.heal();

  const first = await firstAckAbove(load, epoch, 30_000);
  log(`SIGSTOP of ${leader} → first write acknowledged in epoch ${first.epoch} after ${Math.round(first.ackedAtMs - stoppedAt)} ms`);
  // Frozen for longer than the lease (1.5 s) and until the new leader has served for a while.
  await waitFor(() => load.ackedAbove(epoch).length >= 100 && nowMs() - stoppedAt >= 4000, { what: '4 s frozen and 100 writes on the new leader', timeoutMs: 30_000 });
  f.cluster.resume(leader);
  const resumedAt = nowMs();

  // It steps down and follows the new epoch, having rewound what the new leader never had.
  await rejoined(f, leader, first.epoch);
  const n = load.acked.length;
  await waitFor(() => load.acked.length >= n + 100, { what: '100 writes after the zombie came back', timeoutMs: 30_000 });
  await load.stop();

  // It acknowledged nothing after it was resumed (its lease had run out long before).
  const lateOldEpoch = load.acked.filter((a) => a.epoch <= epoch && a.ackedAtMs > resumedAt);
  expect(lateOldEpoch).toEqual([]);

  const report = await verifyHistory(f, load, { label: 'zombie', allowQuarantinedLoss: true });
  expect(report.violations).toEqual([]);
  // Its unreplicated acknowledged writes are in the quarantine, with LSN and epoch; none of the new epoch is.
  expect(report.quarantinedAcks.length).toBeGreaterThan(0);
  expect(report.quarantinedAcks.every((a) => a.epoch === epoch)).toBe(true);
  const fromZombie = report.quarantine.raw.filter((t) => t.node === leader);
  expect(fromZombie.length).toBeGreaterThanOrEqual(report.quarantinedAcks.length);
  for (const t of fromZombie) {
    expect(t).toMatchObject({ lsn: expect.stringMatching(/^\d+$/), epoch, ts: expect.any(Number), discardedAt: expect.any(Number) });
    expect(t.discardedAt).toBeGreaterThanOrEqual(resumedAt - 1000);
  }
  expect(report.stats.leadersByEpoch[first.epoch]).toHaveLength(1);
  expect(report.stats.leadersByEpoch[first.epoch]).not.toContain(leader);
  // Its own log: leader → follower of the newer epoch, then the rewind of what it alone had.
  const zombieLog = logLines(f.cluster, leader);
  const stepDown = zombieLog.findIndex((l) => l.msg === 'role change' && l.from === 'leader' && l.to === 'follower' && Number(l.epoch) >= first.epoch);
  expect(stepDown).toBeGreaterThanOrEqual(0);
  const rewound = zombieLog.filter((l) => l.msg === 'rewind finished: transactions discarded and kept in the quarantine');
  expect(rewound).toHaveLength(1);
  expect(zombieLog.indexOf(rewound[0])).toBeGreaterThan(stepDown);
  const discardedLsns = (rewound[0].discarded as { lsn: number }[]).map((d) => String(d.lsn)).sort();
  expect(discardedLsns).toEqual(fromZombie.map((t) => t.lsn).sort());
  log(`zombie: ${report.quarantinedAcks.length} acknowledged async writes rewound into the quarantine (${fromZombie.length} transactions discarded by ${leader})`);
});

test('the leader cut off from NATS (TCP proxy), then healed: failover, the old leader steps down and rejoins; nothing acknowledged lost', async () => {
  const f = (fc = await startFaultCluster({ mode: 'semi-sync', proxies: true }));
  await createHistoryTable(f.cluster);
  const { leader, epoch } = await steadyLeader(f.cluster);
  const load = startHistoryLoad(f.cluster.gatewayUrl, { clients: 4 });
  await waitFor(() => load.acked.length >= 200, { what: '200 acknowledged writes', timeoutMs: 30_000 });

  f.proxies.get(leader)!.cut();
  const cutAt = nowMs();
  const first = await firstAckAbove(load, epoch, 30_000);
  log(`NATS cut of ${leader} → first write acknowledged in epoch ${first.epoch} after ${Math.round(first.ackedAtMs - cutAt)} ms`);
  await waitFor(() => load.ackedAbove(epoch).length >= 100, { what: '100 writes on the new leader', timeoutMs: 30_000 });
  f.proxies.get(leader)!.heal();
  const healedAt = nowMs();

  await rejoined(f, leader, first.epoch);
  const n = load.acked.length;
  await waitFor(() => load.acked.length >= n + 100, { what: '100 writes after the heal', timeoutMs: 30_000 });
  await load.stop();

  expect(load.acked.filter((a) => a.epoch <= epoch && a.ackedAtMs > healedAt)).toEqual([]);
  const report = await verifyHistory(f, load, { label: 'nats cut' });
  expect(report.violations).toEqual([]);
  // Whatever it rewound was never acknowledged in its epoch (semi-sync): the checker found no acknowledged write missing.
  expect(report.quarantinedAcks).toEqual([]);
  expect(logLines(f.cluster, leader).some((l) => l.msg === 'role change' && l.from === 'leader' && l.to === 'follower' && Number(l.epoch) >= first.epoch)).toBe(true);
  expect(report.stats.leadersByEpoch[first.epoch]).toHaveLength(1);
  expect(report.stats.leadersByEpoch[first.epoch]).not.toContain(leader);
});

test('the leader partitioned from NATS (TCP proxy blackhole: silence, not resets), then healed: same guarantees', async () => {
  const f = (fc = await startFaultCluster({ mode: 'semi-sync', proxies: true }));
  await createHistoryTable(f.cluster);
  const { leader, epoch } = await steadyLeader(f.cluster);
  const load = startHistoryLoad(f.cluster.gatewayUrl, { clients: 4 });
  await waitFor(() => load.acked.length >= 200, { what: '200 acknowledged writes', timeoutMs: 30_000 });

  // nats-server still holds the leader's subscriptions; requests to it vanish in the proxy.
  f.proxies.get(leader)!.blackhole();
  const cutAt = nowMs();
  const first = await firstAckAbove(load, epoch, 30_000);
  log(`NATS blackhole of ${leader} → first write acknowledged in epoch ${first.epoch} after ${Math.round(first.ackedAtMs - cutAt)} ms`);
  await waitFor(() => load.ackedAbove(epoch).length >= 100, { what: '100 writes on the new leader', timeoutMs: 30_000 });
  f.proxies.get(leader)!.heal();
  const healedAt = nowMs();

  await rejoined(f, leader, first.epoch);
  const n = load.acked.length;
  await waitFor(() => load.acked.length >= n + 100, { what: '100 writes after the heal', timeoutMs: 30_000 });
  await load.stop();

  expect(load.acked.filter((a) => a.epoch <= epoch && a.ackedAtMs > healedAt)).toEqual([]);
  const report = await verifyHistory(f, load, { label: 'nats blackhole' });
  expect(report.violations).toEqual([]);
  expect(report.quarantinedAcks).toEqual([]);
  expect(report.stats.leadersByEpoch[first.epoch]).toHaveLength(1);
  expect(report.stats.leadersByEpoch[first.epoch]).not.toContain(leader);
});

test('a follower killed in the middle of a failover: the other follower is promoted; both killed nodes rejoin and converge', async () => {
  const f = (fc = await startFaultCluster({ mode: 'semi-sync' }));
  await createHistoryTable(f.cluster);
  const { leader, epoch } = await steadyLeader(f.cluster);
  const [victim, survivor] = f.cluster.replicaNames.filter((n) => n !== leader);
  const load = startHistoryLoad(f.cluster.gatewayUrl, { clients: 4 });
  await waitFor(() => load.acked.length >= 200, { what: '200 acknowledged writes', timeoutMs: 30_000 });

  const killedAt = nowMs();
  f.cluster.signal(leader, 'SIGKILL');
  f.cluster.signal(victim, 'SIGKILL');
  await Promise.all([f.cluster.stopProcess(leader), f.cluster.stopProcess(victim)]);

  // The survivor leads the next epoch (alone: semi-sync writes wait for a follower to come back).
  const promoted = await waitFor(
    () => f.watch.leaders.find((o) => o.epoch > epoch),
    { what: 'a leader of a newer epoch in heartbeats', timeoutMs: 20_000 },
  );
  expect(promoted.leader).toBe(survivor);
  log(`kill -9 of ${leader} and ${victim} → ${survivor} leads epoch ${promoted.epoch} after ${Math.round(promoted.atMs - killedAt)} ms`);

  await f.cluster.startProcess(victim);
  const first = await firstAckAbove(load, epoch, 30_000);
  expect(first.epoch).toBe(promoted.epoch);
  await rejoined(f, victim, promoted.epoch);
  await f.cluster.startProcess(leader);
  await rejoined(f, leader, promoted.epoch);
  const n = load.acked.length;
  await waitFor(() => load.acked.length >= n + 100, { what: '100 writes with every node back', timeoutMs: 30_000 });
  await load.stop();

  const report = await verifyHistory(f, load, { label: 'follower killed mid-failover' });
  expect(report.violations).toEqual([]);
  expect(report.stats.leadersByEpoch[promoted.epoch]).toEqual([survivor]);
});

test('the active monitor killed with the leader: the standby monitor finishes the failover', async () => {
  const f = (fc = await startFaultCluster({ mode: 'semi-sync' }));
  await createHistoryTable(f.cluster);
  const { leader, epoch } = await steadyLeader(f.cluster);
  const active = await activeMonitor(f.cluster);
  const standby = MONITORS.find((m) => m !== active)!;
  const load = startHistoryLoad(f.cluster.gatewayUrl, { clients: 4 });
  await waitFor(() => load.acked.length >= 200, { what: '200 acknowledged writes', timeoutMs: 30_000 });

  const killedAt = nowMs();
  f.cluster.signal(leader, 'SIGKILL');
  f.cluster.signal(active, 'SIGKILL');
  await Promise.all([f.cluster.stopProcess(leader), f.cluster.stopProcess(active)]);

  const first = await firstAckAbove(load, epoch, 30_000);
  log(`kill -9 of ${leader} and monitor ${active} → first write acknowledged in epoch ${first.epoch} after ${Math.round(first.ackedAtMs - killedAt)} ms (failover by ${standby})`);
  const lease = await readLease(f);
  expect(lease).toMatchObject({ epoch: first.epoch });
  expect(lease.holder).not.toBe(leader);
  const promoted = logLines(f.cluster, standby).filter((l) => l.msg === 'promoted');
  expect(promoted).toEqual([expect.objectContaining({ from: leader, to: lease.holder, epoch: first.epoch })]);
  expect(logLines(f.cluster, active).filter((l) => l.msg === 'promoting')).toEqual([]);
  const view = await waitFor(async () => {
    const v = await clusterView(f.cluster);
    return v.failover.lastFailover?.epoch === first.epoch ? v : null;
  }, { what: 'the failover in /v1/cluster' });
  expect(view.failover).toMatchObject({ monitor: standby, state: 'ok', lastFailover: { from: leader, to: lease.holder } });

  await f.cluster.startProcess(active);
  await f.cluster.startProcess(leader);
  await rejoined(f, leader, first.epoch);
  const n = load.acked.length;
  await waitFor(() => load.acked.length >= n + 100, { what: '100 writes with every node back', timeoutMs: 30_000 });
  await load.stop();
  const report = await verifyHistory(f, load, { label: 'monitor killed mid-failover' });
  expect(report.violations).toEqual([]);
});

test('no follower eligible (all lag more than maxLagOnFailover): no promotion, the reason in /v1/cluster and the monitor log; the old leader returns and nothing is lost', async () => {
  const MAX_LAG = 5;
  const f = (fc = await startFaultCluster({ mode: 'async', proxies: true, env: { FLOTILLA_MAX_LAG_ON_FAILOVER: String(MAX_LAG) } }));
  await createHistoryTable(f.cluster);
  const { leader, epoch } = await steadyLeader(f.cluster);
  const monitor = await activeMonitor(f.cluster);
  const followers = f.cluster.replicaNames.filter((n) => n !== leader);
  const before = await readLease(f);
  const load = startHistoryLoad(f.cluster.gatewayUrl, { clients: 4 });
  await waitFor(() => load.acked.length >= 100, { what: '100 acknowledged writes', timeoutMs: 30_000 });

  // Followers cut off (entries published meanwhile are lost to them: real lag); the leader goes on alone.
  for (const name of followers) f.proxies.get(name)!.cut();
  const cutAt = load.acked.length;
  await waitFor(() => load.acked.length >= cutAt + 50, { what: '50 writes acknowledged by the leader alone', timeoutMs: 30_000 });
  const lastLsn = Math.max(...load.acked.map((a) => a.lsn));
  // The monitors hear the leader's position in its heartbeats.
  await waitFor(async () => Number((await clusterView(f.cluster)).nodes.find((x) => x.name === leader)?.lsn) >= lastLsn, {
    what: `the leader heartbeating lsn ≥ ${lastLsn}`,
  });
  await killAndKeepDown(f.cluster, leader);
  for (const name of followers) f.proxies.get(name)!.heal();

  const view = await waitFor(async () => {
    const v = await clusterView(f.cluster);
    return v.failover.state === 'no-candidate' && followers.every((x) => new RegExp(`${x} lags \\d+ LSNs`).test(v.failover.reason ?? '')) ? v : null;
  }, { what: 'failover state no-candidate naming both lagging followers', timeoutMs: 20_000 });
  log(`no candidate: ${view.failover.reason}`);
  expect(view.failover.monitor).toBe(monitor);
  expect(view.failover.reason).toMatch(new RegExp(`^no eligible candidate: .*maxLagOnFailover ${MAX_LAG}`));
  // For 20 status rounds (≥ 2 s) nobody is promoted: the lease stays, no write is acknowledged.
  const ackedWhileDown = load.acked.length;
  // Each round must hold (an expect inside waitFor would only retry it).
  for (let round = 0; round < 20; round++) {
    const v = await clusterView(f.cluster);
    expect(v.failover.state).toBe('no-candidate');
    expect(await readLease(f)).toMatchObject({ holder: leader, epoch: before.epoch });
    await new Promise((r) => setTimeout(r, 100));
  }
  expect(load.acked.length).toBe(ackedWhileDown);
  expect(f.watch.leaders.filter((o) => o.epoch > epoch)).toEqual([]);
  // Leaderless is the cluster's state, not the gateway's: it stays ready (in Kubernetes its Service
  // keeps its endpoints), refuses writes with 503 + Retry-After, and followers still serve reads.
  const ready = await httpJson('GET', `${f.cluster.gatewayUrl}/readyz`);
  expect({ status: ready.status, body: ready.body }).toEqual({ status: 200, body: { status: 'ready', leader: null } });
  const write = await httpJson('POST', `${f.cluster.gatewayUrl}/v1/execute`, { statements: [{ sql: "INSERT INTO h(k, v) VALUES ('leaderless', 1)" }] });
  expect({ status: write.status, code: write.body.error?.code, retryAfter: write.headers['retry-after'] }).toEqual({ status: 503, code: 'NO_LEADER', retryAfter: '1' });
  const read = await httpJson('POST', `${f.cluster.gatewayUrl}/v1/query`, { sql: 'SELECT count(*) AS n FROM h', consistency: 'any' });
  expect(read.status).toBe(200);
  expect(followers).toContain(read.body.servedBy);
  const lines = logLines(f.cluster, monitor);
  const noCandidate = lines.filter((l) => l.msg === 'no eligible candidate');
  expect(noCandidate.length).toBeGreaterThanOrEqual(1);
  expect(String(noCandidate[noCandidate.length - 1].reason)).toMatch(/lags \d+ LSNs/);
  expect(lines.filter((l) => l.msg === 'promoting')).toEqual([]);

  // The old leader comes back and leads again; what it acknowledged is all there.
  await f.cluster.startProcess(leader);
  await waitFor(async () => {
    const v = await clusterView(f.cluster);
    return v.leader === leader && v.failover.state === 'ok' ? v : null;
  }, { what: `${leader} leading again and the monitor ok`, timeoutMs: 30_000 });
  const n = load.acked.length;
  await waitFor(() => load.acked.length >= n + 100, { what: '100 writes after the old leader returned', timeoutMs: 30_000 });
  await load.stop();
  const report = await verifyHistory(f, load, { label: 'no eligible follower' });
  expect(report.violations).toEqual([]);
  expect(report.quarantine.raw.filter((t) => t.node === leader)).toEqual([]);
  const count = await httpJson('POST', `${f.cluster.gatewayUrl}/v1/query`, { sql: 'SELECT count(*) AS n FROM h', consistency: 'strong' });
  expect(count.body.rows[0].n).toBeGreaterThanOrEqual(report.stats.acked);
});
