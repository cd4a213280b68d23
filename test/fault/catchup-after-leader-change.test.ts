/**
 * A follower whose catch-up request went to a leader that then froze: once a new leader is
 * promoted, the follower must catch up from it promptly (semi-sync writes on the new leader need it
 * when it is the only other node), not after its request to the old leader timed out.
 */
import { stopAll, waitFor } from '@flotilla/testing';
import {
  createHistoryTable,
  FaultCluster,
  firstAckAbove,
  followersCaughtUp,
  nowMs,
  rejoined,
  startFaultCluster,
  startHistoryLoad,
  steadyLeader,
  stopLoads,
  verifyHistory,
} from './fault-support';

jest.setTimeout(180_000);

let fc: FaultCluster | undefined;
afterEach(async () => {
  await stopLoads();
  fc?.watch.stop();
  await fc?.nc.close();
  fc = undefined;
  await stopAll();
});

test('a lagging follower re-points its catch-up to the new leader at once (semi-sync writes resume within 3 s of the promotion)', async () => {
  const f = (fc = await startFaultCluster({ mode: 'semi-sync', proxies: true }));
  await createHistoryTable(f.cluster);
  const { leader, epoch } = await steadyLeader(f.cluster);
  await waitFor(() => followersCaughtUp(f, leader, epoch), { what: 'followers caught up' });
  const [lagging, other] = f.cluster.replicaNames.filter((n) => n !== leader);
  const load = startHistoryLoad(f.cluster.gatewayUrl, { clients: 4 });
  await waitFor(() => load.acked.length >= 100, { what: '100 writes', timeoutMs: 30_000 });

  // `lagging` misses entries while cut off; the leader freezes; `lagging` comes back and asks the frozen leader.
  f.proxies.get(lagging)!.cut();
  const n = load.acked.length;
  await waitFor(() => load.acked.length >= n + 100, { what: `100 writes without ${lagging}`, timeoutMs: 30_000 });
  f.cluster.pause(leader);
  f.proxies.get(lagging)!.heal();

  const promoted = await waitFor(() => f.watch.leaders.find((o) => o.epoch > epoch), { what: 'a new leader', timeoutMs: 20_000 });
  expect(promoted.leader).toBe(other);
  const first = await firstAckAbove(load, epoch, 30_000);
  // eslint-disable-next-line no-console
  console.log(`${other} leads epoch ${promoted.epoch}; first write acknowledged ${Math.round(first.ackedAtMs - promoted.atMs)} ms after its first leader heartbeat`);
  f.cluster.resume(leader);
  await rejoined(f, leader, promoted.epoch);
  await load.stop();
  const report = await verifyHistory(f, load, { label: 'catch-up stall' });
  expect(report.violations).toEqual([]);
  expect(first.ackedAtMs - promoted.atMs).toBeLessThanOrEqual(3000);
  void nowMs;
});
