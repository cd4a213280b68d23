/**
 * Failover soak: ROUNDS kill -9s of whichever node leads, under continuous keyed writes in semi-sync
 * mode (3 replicas, 2 monitors). Each round: every follower caught up and the monitor ok, kill -9 of
 * the leader (kept down), wait for the first write acknowledged in a newer epoch, start the killed
 * node again, wait until it follows. Prints the distribution of kill → first acknowledged write and
 * of the gap clients saw (last acknowledgement before the kill → first after); asserts p99 ≤ 3 s
 * and, with the history checker at the end, that nothing acknowledged was lost or applied twice.
 * Every wait has a deadline, so the soak stops by itself (≈ 2–3 minutes).
 */
import { stopAll, waitFor } from '@flotilla/testing';
import {
  createHistoryTable,
  FaultCluster,
  firstAckAbove,
  followersCaughtUp,
  killAndKeepDown,
  nowMs,
  percentile,
  rejoined,
  startFaultCluster,
  startHistoryLoad,
  steadyLeader,
  stopLoads,
  verifyHistory,
} from './fault-support';

const ROUNDS = 20;
/** Done-when bound on the p99 of leader kill → first acknowledged write. */
const FAILOVER_P99_BOUND_MS = 3000;
/** One round may not take longer than this (failover, restart, rejoin). */
const ROUND_TIMEOUT_MS = 30_000;

jest.setTimeout(ROUNDS * ROUND_TIMEOUT_MS + 120_000);

let fc: FaultCluster | undefined;
afterEach(async () => {
  await stopLoads();
  fc?.watch.stop();
  await fc?.nc.close();
  fc = undefined;
  await stopAll();
});

interface Round {
  round: number;
  killed: string;
  promoted: string;
  epoch: number;
  failoverMs: number;
  clientGapMs: number;
  /** Kill → the new leader's first heartbeat as leader (detection + promotion). */
  promotedMs: number;
}

function distribution(name: string, values: number[]): string {
  const r = (x: number) => Math.round(x);
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return `${name}: n=${values.length} min=${r(Math.min(...values))} p50=${r(percentile(values, 50))} p90=${r(percentile(values, 90))} p99=${r(percentile(values, 99))} max=${r(Math.max(...values))} mean=${r(mean)} ms`;
}

function histogram(values: number[], bucketMs = 250): string {
  const buckets = new Map<number, number>();
  for (const v of values) buckets.set(Math.floor(v / bucketMs), (buckets.get(Math.floor(v / bucketMs)) ?? 0) + 1);
  return [...buckets.keys()]
    .sort((a, b) => a - b)
    .map((b) => `  ${String(b * bucketMs).padStart(5)}–${String((b + 1) * bucketMs).padEnd(5)} ms ${'#'.repeat(buckets.get(b)!)} ${buckets.get(b)}`)
    .join('\n');
}

test(`soak: ${ROUNDS} kill -9s of the leader under load (semi-sync): p99 kill → first acknowledged write ≤ 3 s, nothing acknowledged lost`, async () => {
  const f = (fc = await startFaultCluster({ mode: 'semi-sync' }));
  await createHistoryTable(f.cluster);
  await steadyLeader(f.cluster);
  const load = startHistoryLoad(f.cluster.gatewayUrl, { clients: 4 });
  await waitFor(() => load.acked.length >= 100, { what: '100 acknowledged writes', timeoutMs: 30_000 });

  const rounds: Round[] = [];
  const soakStartedAt = nowMs();
  for (let round = 1; round <= ROUNDS; round++) {
    const { leader, epoch } = await steadyLeader(f.cluster, ROUND_TIMEOUT_MS);
    await waitFor(
      () => followersCaughtUp(f, leader, epoch) && load.acked.some((a) => a.epoch === epoch && a.ackedAtMs > nowMs() - 500),
      { what: `round ${round}: both followers of ${leader} caught up and writes flowing in epoch ${epoch}`, timeoutMs: ROUND_TIMEOUT_MS },
    );

    const killedAt = nowMs();
    await killAndKeepDown(f.cluster, leader);
    const lastBefore = Math.max(...load.acked.filter((a) => a.ackedAtMs <= killedAt).map((a) => a.ackedAtMs));
    const first = await firstAckAbove(load, epoch, ROUND_TIMEOUT_MS);
    const seen = f.watch.leaders.find((o) => o.epoch === first.epoch);
    const promoted = seen?.leader ?? '?';
    rounds.push({
      round,
      killed: leader,
      promoted,
      epoch: first.epoch,
      failoverMs: first.ackedAtMs - killedAt,
      clientGapMs: first.ackedAtMs - lastBefore,
      promotedMs: (seen?.atMs ?? NaN) - killedAt,
    });
    // eslint-disable-next-line no-console
    console.log(`round ${round}: kill -9 ${leader} → ${promoted} acknowledged in epoch ${first.epoch} after ${Math.round(first.ackedAtMs - killedAt)} ms (client gap ${Math.round(first.ackedAtMs - lastBefore)} ms)`);

    await f.cluster.startProcess(leader);
    await rejoined(f, leader, first.epoch, ROUND_TIMEOUT_MS);
  }
  const soakSeconds = (nowMs() - soakStartedAt) / 1000;
  await load.stop();

  const failover = rounds.map((r) => r.failoverMs);
  const gaps = rounds.map((r) => r.clientGapMs);
  // eslint-disable-next-line no-console
  console.log(
    [
      `failover soak: ${ROUNDS} rounds in ${Math.round(soakSeconds)} s, ${load.acked.length} writes acknowledged, ${load.failures.length} failed attempts (retried)`,
      distribution('leader kill -9 → first acknowledged write', failover),
      histogram(failover),
      distribution('client write gap (last ack before the kill → first after)', gaps),
      distribution('of which: kill → new leader heartbeating (detection + promotion)', rounds.map((r) => r.promotedMs)),
      distribution('of which: new leader heartbeating → first acknowledged write', rounds.map((r) => r.failoverMs - r.promotedMs)),
      `promotions: ${rounds.map((r) => `${r.killed}→${r.promoted}`).join(' ')}`,
    ].join('\n'),
  );

  const report = await verifyHistory(f, load, { label: 'soak' });
  expect(report.violations).toEqual([]);
  expect(new Set(rounds.map((r) => r.epoch)).size).toBe(ROUNDS);
  expect(rounds.every((r) => r.promoted !== r.killed)).toBe(true);
  expect(percentile(failover, 99)).toBeLessThanOrEqual(FAILOVER_P99_BOUND_MS);
});
