/**
 * The election core (LeaseKeeper) over the Kubernetes Lease backend against a real API server:
 * nodes that take over an expired lease themselves (`takeExpired`, how the monitor pods elect their
 * active one) fail over ten times with one leader per epoch and never two valid leaders at once,
 * and a leader cut off from the API server stops counting itself valid before anyone else can
 * take the lease. Every node is in this process, so "two valid leaders at once" is checked exactly
 * at the instant each node becomes leader, and sampled in between.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import { KubernetesLeaser, kubernetesClient, kubernetesLeaseName, LeadershipView, LeaseKeeper, loadKubeConfig } from '@flotilla/election';
import { MemoryLogger, systemClock } from '@flotilla/logging';
import { TcpProxy } from '../../libs/testing/src/tcp-proxy';
import { ControlPlane, startControlPlane } from './control-plane';
import { waitFor } from './support';

jest.setTimeout(120_000);

const NAMESPACE = 'default';
const TTL_MS = 1_200;
const RENEW_MS = 200;
const SAFETY_MARGIN_MS = 300;
const REQUEST_TIMEOUT_MS = 400;
const FAILOVERS = 10;
/** Sampling period of the "never two valid leaders" check between transitions. */
const SAMPLE_MS = 5;

let plane: ControlPlane;
let kc: KubeConfig;

beforeAll(async () => {
  plane = await startControlPlane();
  kc = loadKubeConfig(plane.kubeconfig);
});

afterAll(async () => {
  await plane?.stop();
});

/** One simulated node: its own Lease client (own watch) and keeper. */
class Node {
  readonly leaser: KubernetesLeaser;
  readonly keeper: LeaseKeeper;
  view: LeadershipView = { leader: null, epoch: 0, isLeader: false };
  alive = true;

  constructor(
    readonly name: string,
    leaseName: string,
    kubeConfig: KubeConfig,
    onLeader: (node: Node) => void,
  ) {
    this.leaser = new KubernetesLeaser({ name: leaseName, namespace: NAMESPACE, kubeConfig, requestTimeoutMs: REQUEST_TIMEOUT_MS, resyncMs: RENEW_MS });
    this.keeper = new LeaseKeeper(
      this.leaser,
      systemClock,
      new MemoryLogger({ node: name }),
      { node: name, ttlMs: TTL_MS, renewMs: RENEW_MS, safetyMarginMs: SAFETY_MARGIN_MS, knownEpoch: () => this.view.epoch, takeExpired: true },
      (view) => {
        this.view = view;
        if (view.isLeader) onLeader(this);
      },
    );
  }

  /** kill -9: no release, no more renewals or watch. */
  async kill(): Promise<void> {
    this.alive = false;
    this.keeper.stop();
    await this.leaser.close();
  }
}

/** Watches a set of nodes for the safety invariants. */
class SafetyChecker {
  readonly leadersByEpoch = new Map<number, Set<string>>();
  readonly violations: string[] = [];
  private readonly sampler: NodeJS.Timeout;

  constructor(private readonly nodes: () => Node[]) {
    this.sampler = setInterval(() => this.check('sample'), SAMPLE_MS);
  }

  /** Called synchronously when `node` becomes leader. */
  onLeader(node: Node): void {
    const holders = this.leadersByEpoch.get(node.view.epoch) ?? new Set<string>();
    holders.add(node.name);
    this.leadersByEpoch.set(node.view.epoch, holders);
    if (holders.size > 1) this.violations.push(`epoch ${node.view.epoch} led by ${[...holders].join(' and ')}`);
    this.check(`${node.name} became leader of epoch ${node.view.epoch}`);
  }

  private check(when: string): void {
    const valid = this.nodes().filter((n) => n.alive && n.keeper.isValidLeader());
    if (valid.length > 1) this.violations.push(`${when}: valid leaders ${valid.map((n) => `${n.name}@${n.view.epoch}`).join(', ')}`);
  }

  stop(): void {
    clearInterval(this.sampler);
  }
}

test(`${FAILOVERS} failovers by killing the leader: epoch + 1 each time, one leader per epoch, never two at once`, async () => {
  const leaseName = kubernetesLeaseName('kill-test', 'monitor');
  const nodes: Node[] = [];
  const checker = new SafetyChecker(() => nodes);
  const spawn = async (name: string) => {
    const node = new Node(name, leaseName, kc, (n) => checker.onLeader(n));
    nodes.push(node);
    await node.keeper.start();
    return node;
  };
  try {
    for (const name of ['monitor-a', 'monitor-b', 'monitor-c']) await spawn(name);
    let leader = await waitFor('a first leader', () => nodes.find((n) => n.alive && n.keeper.isValidLeader()), 10_000);
    const firstEpoch = leader.view.epoch;
    for (let i = 1; i <= FAILOVERS; i++) {
      const killedEpoch = leader.view.epoch;
      await leader.kill();
      const next = await waitFor(
        `failover ${i}: a new leader after ${leader.name} was killed`,
        () => nodes.find((n) => n.alive && n.view.isLeader && n.view.epoch > killedEpoch && n.keeper.isValidLeader()),
        TTL_MS * 5,
      );
      expect(next.view.epoch).toBe(killedEpoch + 1);
      // The killed node comes back (same name, fresh process) and follows.
      const restarted = await spawn(leader.name);
      await waitFor(`${leader.name} to follow ${next.name}`, () => restarted.view.leader === next.name && !restarted.view.isLeader, 5_000);
      leader = next;
    }
    const lease = await kc.makeApiClient(kubernetesClient().CoordinationV1Api).readNamespacedLease({ name: leaseName, namespace: NAMESPACE });
    expect(lease.spec?.leaseTransitions).toBe(firstEpoch + FAILOVERS);
    expect(lease.spec?.holderIdentity).toBe(leader.name);
    expect(checker.violations).toEqual([]);
    expect([...checker.leadersByEpoch.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: FAILOVERS + 1 }, (_, k) => firstEpoch + k));
  } finally {
    checker.stop();
    for (const n of nodes) if (n.alive) await n.kill();
  }
});

test('a leader cut off from the API server stops counting itself valid before another node takes the lease', async () => {
  const leaseName = kubernetesLeaseName('partition-test', 'monitor');
  const proxy = await TcpProxy.start(Number(new URL(plane.server).port));
  const viaProxy = loadKubeConfig(plane.kubeconfig);
  viaProxy.loadFromClusterAndUser({ ...viaProxy.getCurrentCluster()!, server: `https://127.0.0.1:${proxy.port}` }, viaProxy.getCurrentUser()!);
  const nodes: Node[] = [];
  const checker = new SafetyChecker(() => nodes);
  let invalidAtMono: number | null = null;
  let takeoverAtMono: number | null = null;
  const onLeader = (n: Node) => {
    checker.onLeader(n);
    if (n.name === 'monitor-b') takeoverAtMono = systemClock.monotonic();
  };
  const cutOff = new Node('monitor-a', leaseName, viaProxy, onLeader);
  nodes.push(cutOff);
  try {
    await cutOff.keeper.start();
    await waitFor('monitor-a to lead', () => cutOff.keeper.isValidLeader(), 10_000);
    const other = new Node('monitor-b', leaseName, kc, onLeader);
    nodes.push(other);
    await other.keeper.start();
    await waitFor('monitor-b to follow', () => other.view.leader === 'monitor-a', 5_000);
    const epoch = cutOff.view.epoch;

    proxy.blackhole();
    const watchInvalid = setInterval(() => {
      if (invalidAtMono === null && !cutOff.keeper.isValidLeader()) invalidAtMono = systemClock.monotonic();
    }, 1);
    try {
      await waitFor('monitor-b to take the expired lease', () => other.keeper.isValidLeader(), TTL_MS * 5);
    } finally {
      clearInterval(watchInvalid);
    }
    expect(other.view.epoch).toBe(epoch + 1);
    expect(invalidAtMono).not.toBeNull();
    expect(takeoverAtMono).not.toBeNull();
    // Stopped writing at least a safety margin's worth before the takeover (both on this clock).
    expect(takeoverAtMono! - invalidAtMono!).toBeGreaterThan(SAFETY_MARGIN_MS / 2);

    proxy.heal();
    await waitFor('monitor-a to learn of the new leader and follow', () => cutOff.view.leader === 'monitor-b' && !cutOff.view.isLeader, 5_000);
    expect(cutOff.view.epoch).toBe(epoch + 1);
    expect(checker.violations).toEqual([]);
  } finally {
    checker.stop();
    for (const n of nodes) if (n.alive) await n.kill();
    await proxy.close();
  }
});
