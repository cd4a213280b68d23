/**
 * KubernetesLeaser and PodRoleLabeler against a real kube-apiserver + etcd (no mocks): create,
 * compare-and-swap, conflicts, leaseTransitions as the epoch, watch latency, an unreachable API
 * server, and the pod role label following the lease holder on real Pod objects.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CoordinationV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import {
  KubernetesLeaser,
  kubernetesClient,
  kubernetesLeaseName,
  LeaseConflictError,
  LeaseRecord,
  LeaseUnavailableError,
  loadKubeConfig,
  PodLabelError,
  PodRoleLabeler,
  ROLE_LABEL,
  TTL_MS_ANNOTATION,
} from '@flotilla/election';
import { TcpProxy } from '../../libs/testing/src/tcp-proxy';
import { ControlPlane, startControlPlane } from './control-plane';
import { freePort, runTool, waitFor } from './support';

jest.setTimeout(120_000);

const NAMESPACE = 'default';
/** Resync so slow that only the watch can explain a quick notification. */
const SLOW_RESYNC_MS = 60_000;
/** A watch must deliver a new holder well within this. */
const WATCH_LATENCY_MS_MAX = 1_500;

let plane: ControlPlane;
let kc: KubeConfig;
let coordination: CoordinationV1Api;
let core: CoreV1Api;
const leasers: KubernetesLeaser[] = [];
let leaseCounter = 0;

beforeAll(async () => {
  plane = await startControlPlane();
  kc = loadKubeConfig(plane.kubeconfig);
  coordination = kc.makeApiClient(kubernetesClient().CoordinationV1Api);
  core = kc.makeApiClient(kubernetesClient().CoreV1Api);
});

afterAll(async () => {
  await Promise.all(leasers.map((l) => l.close()));
  await plane?.stop();
});

/** A leaser on a lease name no other test uses. */
function newLeaser(name = `flotilla-leader-${++leaseCounter}`, extra: { resyncMs?: number; kubeConfig?: KubeConfig; requestTimeoutMs?: number } = {}) {
  const leaser = new KubernetesLeaser({ name, namespace: NAMESPACE, kubeConfig: extra.kubeConfig ?? kc, ...extra });
  leasers.push(leaser);
  return leaser;
}

describe('KubernetesLeaser', () => {
  test('reads null before the lease exists, then creates it with every field mapped', async () => {
    const leaser = newLeaser();
    expect(await leaser.read()).toBeNull();
    const before = Date.now();
    const created = await leaser.compareAndSwap(null, { holder: 'replica-0', epoch: 1, ttlMs: 2500 });
    expect(created).toMatchObject({ holder: 'replica-0', epoch: 1, ttlMs: 2500 });
    expect(created.revision).toMatch(/^\d+$/);
    expect(created.renewedAtMs).toBeGreaterThanOrEqual(before - 5);
    expect(await leaser.read()).toEqual(created);

    // The stored object is a plain Lease that kubectl and client-go leader election understand.
    const raw = await coordination.readNamespacedLease({ name: leaser.name, namespace: NAMESPACE });
    expect(raw.spec?.holderIdentity).toBe('replica-0');
    expect(raw.spec?.leaseTransitions).toBe(1);
    expect(raw.spec?.leaseDurationSeconds).toBe(3); // 2.5 s rounded up
    expect(raw.metadata?.annotations?.[TTL_MS_ANNOTATION]).toBe('2500');
    expect(new Date(raw.spec!.renewTime!).getTime()).toBe(created.renewedAtMs);
    expect(new Date(raw.spec!.acquireTime!).getTime()).toBe(created.renewedAtMs);
    const kubectl = await runTool('kubectl', ['--kubeconfig', plane.kubeconfig, 'get', 'lease', leaser.name, '-o', 'jsonpath={.spec.renewTime}']);
    expect(kubectl.stderr).toBe('');
    expect(kubectl.stdout).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/); // MicroTime
  });

  test('fromEnvironment connects through KUBECONFIG, with the namespace of POD_NAMESPACE or the kubeconfig context', async () => {
    const name = kubernetesLeaseName(`env-${++leaseCounter}`, 'leader');
    expect(name).toBe(`env-${leaseCounter}-leader`);
    const fromKubeconfig = KubernetesLeaser.fromEnvironment(name, { env: { KUBECONFIG: plane.kubeconfig } });
    leasers.push(fromKubeconfig);
    expect(fromKubeconfig.namespace).toBe('default'); // the admin kubeconfig's context namespace
    const created = await fromKubeconfig.compareAndSwap(null, { holder: 'replica-0', epoch: 1, ttlMs: 3000 });
    expect((await coordination.readNamespacedLease({ name, namespace: 'default' })).metadata?.resourceVersion).toBe(created.revision);

    await core.createNamespace({ body: { metadata: { name: 'flotilla-env' } } });
    const inPodNamespace = KubernetesLeaser.fromEnvironment(name, { env: { KUBECONFIG: plane.kubeconfig, POD_NAMESPACE: 'flotilla-env' } });
    leasers.push(inPodNamespace);
    expect(await inPodNamespace.read()).toBeNull(); // a different Lease: same name, other namespace
    await inPodNamespace.compareAndSwap(null, { holder: 'replica-1', epoch: 1, ttlMs: 3000 });
    expect((await coordination.readNamespacedLease({ name, namespace: 'flotilla-env' })).spec?.holderIdentity).toBe('replica-1');
  });

  test('create over an existing lease is a conflict', async () => {
    const leaser = newLeaser();
    await leaser.compareAndSwap(null, { holder: 'replica-0', epoch: 1, ttlMs: 3000 });
    await expect(leaser.compareAndSwap(null, { holder: 'replica-1', epoch: 1, ttlMs: 3000 })).rejects.toBeInstanceOf(LeaseConflictError);
    expect((await leaser.read())?.holder).toBe('replica-0');
  });

  test('replace succeeds only with the current resourceVersion', async () => {
    const leaser = newLeaser();
    const first = await leaser.compareAndSwap(null, { holder: 'replica-0', epoch: 1, ttlMs: 3000 });
    const renewed = await leaser.compareAndSwap(first, { holder: 'replica-0', epoch: 1, ttlMs: 3000 });
    expect(renewed.revision).not.toBe(first.revision);
    expect(renewed.renewedAtMs).toBeGreaterThanOrEqual(first.renewedAtMs);

    // A renewal keeps acquireTime: the holder did not change.
    const raw = await coordination.readNamespacedLease({ name: leaser.name, namespace: NAMESPACE });
    expect(new Date(raw.spec!.acquireTime!).getTime()).toBe(first.renewedAtMs);

    await expect(leaser.compareAndSwap(first, { holder: 'replica-1', epoch: 2, ttlMs: 3000 })).rejects.toBeInstanceOf(LeaseConflictError);
    expect(await leaser.read()).toEqual(renewed);
  });

  test('of two writers racing from the same revision exactly one wins', async () => {
    const name = `flotilla-race-${++leaseCounter}`;
    const a = newLeaser(name);
    const b = newLeaser(name);
    let current = await a.compareAndSwap(null, { holder: null, epoch: 0, ttlMs: 3000 });
    for (let round = 1; round <= 5; round++) {
      const results = await Promise.allSettled([
        a.compareAndSwap(current, { holder: 'replica-a', epoch: round, ttlMs: 3000 }),
        b.compareAndSwap(current, { holder: 'replica-b', epoch: round, ttlMs: 3000 }),
      ]);
      const won = results.filter((r): r is PromiseFulfilledResult<LeaseRecord> => r.status === 'fulfilled');
      const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(won).toHaveLength(1);
      expect(lost).toHaveLength(1);
      expect(lost[0].reason).toBeInstanceOf(LeaseConflictError);
      current = won[0].value;
      expect(await b.read()).toEqual(current);
    }
    expect(current.epoch).toBe(5);
  });

  test('leaseTransitions is the epoch across hand-overs and a release', async () => {
    const leaser = newLeaser();
    let current = await leaser.compareAndSwap(null, { holder: 'replica-0', epoch: 1, ttlMs: 3000 });
    for (const [i, holder] of ['replica-1', 'replica-2', 'replica-0'].entries()) {
      current = await leaser.compareAndSwap(current, { holder, epoch: current.epoch + 1, ttlMs: 3000 });
      const raw = await coordination.readNamespacedLease({ name: leaser.name, namespace: NAMESPACE });
      expect(raw.spec?.leaseTransitions).toBe(i + 2);
      expect(raw.spec?.holderIdentity).toBe(holder);
    }
    const released = await leaser.compareAndSwap(current, { holder: null, epoch: current.epoch, ttlMs: 3000 });
    expect(released.holder).toBeNull();
    expect(await leaser.read()).toMatchObject({ holder: null, epoch: 4 });
  });

  test('a watch sees a new holder at once, without waiting for the resync', async () => {
    const name = `flotilla-watch-${++leaseCounter}`;
    const writer = newLeaser(name);
    const watcher = newLeaser(name, { resyncMs: SLOW_RESYNC_MS });
    const seen: (LeaseRecord | null)[] = [];
    const watch = watcher.watch((r) => seen.push(r));
    try {
      let current = await writer.compareAndSwap(null, { holder: 'replica-0', epoch: 1, ttlMs: 3000 });
      await waitFor('watch to deliver the created lease', () => seen.some((r) => r?.holder === 'replica-0'), WATCH_LATENCY_MS_MAX * 4);
      for (const holder of ['replica-1', 'replica-2', 'replica-3']) {
        const changedAt = Date.now();
        current = await writer.compareAndSwap(current, { holder, epoch: current.epoch + 1, ttlMs: 3000 });
        await waitFor(`watch to deliver holder ${holder}`, () => seen.some((r) => r?.revision === current.revision), WATCH_LATENCY_MS_MAX);
        expect(Date.now() - changedAt).toBeLessThan(WATCH_LATENCY_MS_MAX);
        expect(seen[seen.length - 1]).toEqual(current);
      }
      await coordination.deleteNamespacedLease({ name, namespace: NAMESPACE });
      await waitFor('watch to deliver the deletion', () => seen[seen.length - 1] === null, WATCH_LATENCY_MS_MAX);
    } finally {
      watch.stop();
    }
    const count = seen.length;
    await writer.compareAndSwap(null, { holder: 'replica-9', epoch: 9, ttlMs: 3000 });
    // Stopped: a later write is not delivered (checked after the writer's own read saw it).
    await waitFor('writer to read its write', async () => (await writer.read())?.holder === 'replica-9');
    expect(seen).toHaveLength(count);
  });

  test('the resync delivers the current value even when nothing changes', async () => {
    const name = `flotilla-resync-${++leaseCounter}`;
    const writer = newLeaser(name);
    const created = await writer.compareAndSwap(null, { holder: 'replica-0', epoch: 1, ttlMs: 3000 });
    const watcher = newLeaser(name, { resyncMs: 200 });
    const seen: (LeaseRecord | null)[] = [];
    const watch = watcher.watch((r) => seen.push(r));
    try {
      await waitFor('three deliveries of the unchanged lease', () => seen.filter((r) => r?.revision === created.revision).length >= 3, 5_000);
    } finally {
      watch.stop();
    }
  });

  test('an unreachable API server is LeaseUnavailableError, within the request timeout', async () => {
    const port = await freePort(); // nothing listens there
    const path = join(plane.dir, 'unreachable.kubeconfig');
    const cluster = kc.getCurrentCluster()!;
    const user = kc.getCurrentUser()!;
    const broken = new (kubernetesClient().KubeConfig)();
    broken.loadFromClusterAndUser({ ...cluster, server: `https://127.0.0.1:${port}` }, user);
    writeFileSync(path, broken.exportConfig());
    const leaser = newLeaser(undefined, { kubeConfig: loadKubeConfig(path), requestTimeoutMs: 1000 });
    const started = Date.now();
    await expect(leaser.read()).rejects.toBeInstanceOf(LeaseUnavailableError);
    await expect(leaser.compareAndSwap(null, { holder: 'replica-0', epoch: 1, ttlMs: 3000 })).rejects.toBeInstanceOf(LeaseUnavailableError);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  test('through a partition requests fail fast as unavailable, and the watch catches up once it heals', async () => {
    const name = `flotilla-partition-${++leaseCounter}`;
    const proxy = await TcpProxy.start(Number(new URL(plane.server).port));
    try {
      const viaProxy = loadKubeConfig(plane.kubeconfig);
      viaProxy.loadFromClusterAndUser({ ...viaProxy.getCurrentCluster()!, server: `https://127.0.0.1:${proxy.port}` }, viaProxy.getCurrentUser()!);
      // Resync too slow to matter: catching up is the stream's own recovery (re-list, re-watch).
      const partitioned = newLeaser(name, { kubeConfig: viaProxy, requestTimeoutMs: 500, resyncMs: SLOW_RESYNC_MS });
      const writer = newLeaser(name);
      let current = await writer.compareAndSwap(null, { holder: 'replica-0', epoch: 1, ttlMs: 3000 });
      const seen: (LeaseRecord | null)[] = [];
      const watch = partitioned.watch((r) => seen.push(r));
      try {
        await waitFor('the watch through the proxy to see replica-0', () => seen.some((r) => r?.holder === 'replica-0'), 5_000);
        proxy.blackhole();
        const started = Date.now();
        await expect(partitioned.read()).rejects.toBeInstanceOf(LeaseUnavailableError);
        await expect(partitioned.compareAndSwap(current, { holder: 'replica-0', epoch: 1, ttlMs: 3000 })).rejects.toBeInstanceOf(LeaseUnavailableError);
        // Bounded by requestTimeoutMs (two requests of 500 ms), so a leader can demote in time.
        expect(Date.now() - started).toBeLessThan(2_000);
        current = await writer.compareAndSwap(current, { holder: 'replica-1', epoch: 2, ttlMs: 3000 });
        proxy.heal();
        await waitFor('the watch to see replica-1 after the partition', () => seen.some((r) => r?.revision === current.revision), 5_000);
        // And the stream works again: the next change arrives too.
        current = await writer.compareAndSwap(current, { holder: 'replica-2', epoch: 3, ttlMs: 3000 });
        await waitFor('the watch to see replica-2', () => seen.some((r) => r?.revision === current.revision), 5_000);
        expect(await partitioned.read()).toEqual(current);
      } finally {
        watch.stop();
      }
    } finally {
      await proxy.close();
    }
  });

  test('a user without RBAC rights gets LeaseUnavailableError, not a conflict', async () => {
    // Impersonating a service account with no bindings: the API server answers 403.
    const impersonated = loadKubeConfig(plane.kubeconfig);
    const user = impersonated.getCurrentUser()!;
    const cluster = impersonated.getCurrentCluster()!;
    const kubeConfig = new (kubernetesClient().KubeConfig)();
    kubeConfig.loadFromClusterAndUser(cluster, { ...user, impersonateUser: 'system:serviceaccount:default:nobody' } as typeof user);
    const leaser = newLeaser(undefined, { kubeConfig });
    await expect(leaser.read()).rejects.toThrow(/HTTP 403/);
    await expect(leaser.read()).rejects.toBeInstanceOf(LeaseUnavailableError);
  });
});

describe('PodRoleLabeler', () => {
  const namespace = 'flotilla-roles';
  const replicas = ['replica-0', 'replica-1', 'replica-2'];

  beforeAll(async () => {
    await core.createNamespace({ body: { metadata: { name: namespace } } });
    for (const name of replicas) {
      await core.createNamespacedPod({
        namespace,
        body: {
          metadata: { name, labels: { 'app.kubernetes.io/name': 'flotilla', 'app.kubernetes.io/component': 'replica' } },
          spec: { containers: [{ name: 'replica', image: 'flotilla:test' }] },
        },
      });
    }
  });

  async function rolesByPod(): Promise<Record<string, string | undefined>> {
    const pods = await core.listNamespacedPod({ namespace });
    return Object.fromEntries(pods.items.map((p) => [p.metadata!.name!, p.metadata?.labels?.[ROLE_LABEL]]));
  }

  test('sets and changes the role label, keeping the other labels', async () => {
    const labeler = new PodRoleLabeler({ kubeConfig: kc, namespace, podName: 'replica-0' });
    expect(labeler.currentRole).toBeNull();
    await labeler.setRole('leader');
    expect(labeler.currentRole).toBe('leader');
    let pod = await core.readNamespacedPod({ name: 'replica-0', namespace });
    expect(pod.metadata?.labels).toMatchObject({ [ROLE_LABEL]: 'leader', 'app.kubernetes.io/name': 'flotilla' });
    await labeler.setRole('follower');
    pod = await core.readNamespacedPod({ name: 'replica-0', namespace });
    expect(pod.metadata?.labels).toMatchObject({ [ROLE_LABEL]: 'follower', 'app.kubernetes.io/component': 'replica' });
  });

  test('fromEnvironment labels the pod in POD_NAMESPACE', async () => {
    const labeler = PodRoleLabeler.fromEnvironment('replica-2', { env: { KUBECONFIG: plane.kubeconfig, POD_NAMESPACE: namespace } });
    await labeler.setRole('follower');
    expect((await core.readNamespacedPod({ name: 'replica-2', namespace })).metadata?.labels?.[ROLE_LABEL]).toBe('follower');
  });

  test('a missing pod is a PodLabelError and is retried on the next call', async () => {
    const labeler = new PodRoleLabeler({ kubeConfig: kc, namespace, podName: 'replica-9' });
    await expect(labeler.setRole('leader')).rejects.toBeInstanceOf(PodLabelError);
    expect(labeler.currentRole).toBeNull();
    await core.createNamespacedPod({ namespace, body: { metadata: { name: 'replica-9' }, spec: { containers: [{ name: 'replica', image: 'flotilla:test' }] } } });
    try {
      await labeler.setRole('leader');
      expect((await core.readNamespacedPod({ name: 'replica-9', namespace })).metadata?.labels?.[ROLE_LABEL]).toBe('leader');
    } finally {
      await core.deleteNamespacedPod({ name: 'replica-9', namespace, gracePeriodSeconds: 0 });
    }
  });

  test('the role label follows the lease holder, as each replica watches the lease', async () => {
    const leaseName = `flotilla-roles-${++leaseCounter}`;
    // One "replica" per pod: its own leaser (watch) and its own labeler, as apps/replica wires them.
    const watches = replicas.map((podName) => {
      const leaser = newLeaser(leaseName, { resyncMs: 500 });
      const labeler = new PodRoleLabeler({ kubeConfig: kc, namespace, podName });
      let chain = Promise.resolve();
      return leaser.watch((record) => {
        const role = record?.holder === podName ? 'leader' : 'follower';
        chain = chain.then(() => labeler.setRole(role)).catch(() => undefined);
      });
    });
    const writer = newLeaser(leaseName);
    try {
      let current = await writer.compareAndSwap(null, { holder: 'replica-0', epoch: 1, ttlMs: 3000 });
      for (const leader of ['replica-0', 'replica-2', 'replica-1', 'replica-0']) {
        if (current.holder !== leader) current = await writer.compareAndSwap(current, { holder: leader, epoch: current.epoch + 1, ttlMs: 3000 });
        const expected = Object.fromEntries(replicas.map((r) => [r, r === leader ? 'leader' : 'follower']));
        await waitFor(`role labels with ${leader} as leader`, async () => JSON.stringify(await rolesByPod()) === JSON.stringify(expected), 5_000);
        // What the chart's `<release>-rw` Service selects, seen through kubectl.
        const rw = await runTool('kubectl', ['--kubeconfig', plane.kubeconfig, '-n', namespace, 'get', 'pods', '-l', `${ROLE_LABEL}=leader`, '-o', 'name']);
        expect(rw.stdout.trim()).toBe(`pod/${leader}`);
      }
      expect(current.epoch).toBe(4);
    } finally {
      for (const w of watches) w.stop();
    }
  });
});
