/**
 * The Helm chart against the real local control plane: `helm lint` and `helm template` for the
 * default values and three other value sets (external NATS, 5 replicas, 3 gateways + Ingress),
 * every rendered object accepted by kube-apiserver (`kubectl apply --dry-run=server`), the replica
 * ServiceAccount's rights checked with `kubectl auth can-i --as`, the schema refusing bad values,
 * and k8s/ (kustomize) matching the chart's defaults.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { configKeys, envNameOf } from '@flotilla/config';
import { kubernetesClient } from '@flotilla/election';
import { removeTempDir, tempDir } from '@flotilla/testing';
import { ControlPlane, startControlPlane } from './control-plane';
import { runTool, toolsBinDir } from './support';

jest.setTimeout(180_000);

const ROOT = join(__dirname, '..', '..');
const CHART = join(ROOT, 'helm', 'flotilla');
const KUBE_VERSION = process.env.FLOTILLA_K8S_VERSION ?? '1.34.4';
const RELEASE = 'flotilla';

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- rendered manifests are untyped YAML
  rules?: { apiGroups: string[]; resources: string[]; verbs: string[] }[];
}

interface ValueSet {
  name: string;
  namespace: string;
  args: string[];
  /** What this value set must render, beyond being valid. */
  check(objects: K8sObject[]): void;
}

const find = (objects: K8sObject[], kind: string, name: string) => objects.find((o) => o.kind === kind && o.metadata.name === name);
const envOf = (workload: K8sObject | undefined): Record<string, string> =>
  Object.fromEntries(
    (workload?.spec.template.spec.containers[0].env as { name: string; value?: string }[]).filter((e) => e.value !== undefined).map((e) => [e.name, e.value!]),
  );

const VALUE_SETS: ValueSet[] = [
  {
    name: 'default',
    namespace: 'helm-default',
    args: [],
    check(objects) {
      const replicas = find(objects, 'StatefulSet', `${RELEASE}-replica`);
      expect(replicas?.spec.replicas).toBe(3);
      expect(replicas?.spec.volumeClaimTemplates[0].spec.resources.requests.storage).toBe('1Gi');
      expect(find(objects, 'StatefulSet', `${RELEASE}-nats`)).toBeDefined();
      expect(envOf(replicas).FLOTILLA_NATS_URL).toBe(`nats://${RELEASE}-nats:4222`);
      expect(envOf(replicas).FLOTILLA_LEASE_BACKEND).toBe('kubernetes');
      const node = replicas?.spec.template.spec.containers[0].env.find((e: { name: string }) => e.name === 'FLOTILLA_NODE');
      expect(node.valueFrom.fieldRef.fieldPath).toBe('metadata.name');
      expect(find(objects, 'Deployment', `${RELEASE}-monitor`)?.spec.replicas).toBe(2);
      expect(find(objects, 'Deployment', `${RELEASE}-gateway`)?.spec.replicas).toBe(2);
      expect(objects.some((o) => o.kind === 'Ingress')).toBe(false);
      expect(find(objects, 'Service', `${RELEASE}-rw`)?.spec.selector['flotilla.io/role']).toBe('leader');
      // The leader's own REST API behind -rw: the replica serves it on apiPort.
      expect(envOf(replicas).FLOTILLA_API_PORT).toBe('8081');
      expect(replicas?.spec.template.spec.containers[0].ports).toContainEqual({ name: 'api', containerPort: 8081 });
      for (const s of ['rw', 'ro', 'replica']) expect(find(objects, 'Service', `${RELEASE}-${s}`)?.spec.ports).toContainEqual({ name: 'api', port: 8081, targetPort: 'api' });
      expect(find(objects, 'Service', `${RELEASE}-ro`)?.spec.selector['flotilla.io/role']).toBe('follower');
      for (const workload of objects.filter((o) => o.kind === 'StatefulSet' || o.kind === 'Deployment')) {
        const pod = workload.spec.template.spec;
        expect(pod.securityContext.runAsNonRoot).toBe(true);
        for (const c of pod.containers) {
          expect(c.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
          expect(c.resources.requests).toBeDefined();
          expect(c.readinessProbe).toBeDefined();
          expect(c.livenessProbe).toBeDefined();
        }
      }
    },
  },
  {
    name: 'external NATS',
    namespace: 'helm-external-nats',
    args: ['-f', join(CHART, 'ci', 'external-nats-values.yaml')],
    check(objects) {
      expect(objects.filter((o) => o.metadata.name.includes('nats'))).toEqual([]);
      for (const name of [`${RELEASE}-replica`, `${RELEASE}-monitor`, `${RELEASE}-gateway`]) {
        const workload = objects.find((o) => o.metadata.name === name && (o.kind === 'StatefulSet' || o.kind === 'Deployment'));
        expect(envOf(workload).FLOTILLA_NATS_URL).toBe('nats://nats.messaging.svc.cluster.local:4222');
      }
    },
  },
  {
    name: '5 replicas',
    namespace: 'helm-five-replicas',
    args: ['-f', join(CHART, 'ci', 'five-replicas-values.yaml')],
    check(objects) {
      const replicas = find(objects, 'StatefulSet', `${RELEASE}-replica`);
      expect(replicas?.spec.replicas).toBe(5);
      expect(envOf(replicas)).toMatchObject({ FLOTILLA_MODE: 'semi-sync', FLOTILLA_SYNC_FOLLOWERS: '2' });
      expect(replicas?.spec.volumeClaimTemplates[0].spec.resources.requests.storage).toBe('5Gi');
    },
  },
  {
    name: '3 gateways and an Ingress',
    namespace: 'helm-gateway-ingress',
    args: ['-f', join(CHART, 'ci', 'gateway-ingress-values.yaml')],
    check(objects) {
      expect(find(objects, 'Deployment', `${RELEASE}-gateway`)?.spec.replicas).toBe(3);
      const ingress = find(objects, 'Ingress', `${RELEASE}-gateway`);
      expect(ingress?.spec.rules[0].host).toBe('db.example.com');
      expect(ingress?.spec.rules[0].http.paths[0].backend.service.name).toBe(`${RELEASE}-gateway`);
      expect(ingress?.spec.tls[0].secretName).toBe('flotilla-gateway-tls');
    },
  },
  {
    name: 'command-line overrides (helm upgrade --set replicas=7)',
    namespace: 'helm-set',
    args: ['--set', 'replicas=7', '--set', 'logRetentionBytes=1073741824', '--set', 'cluster=orders'],
    check(objects) {
      const replicas = find(objects, 'StatefulSet', `${RELEASE}-replica`);
      expect(replicas?.spec.replicas).toBe(7);
      expect(envOf(replicas)).toMatchObject({ FLOTILLA_LOG_RETENTION_BYTES: '1073741824', FLOTILLA_CLUSTER: 'orders' });
    },
  },
];

let plane: ControlPlane;
const kubectl = (args: string[], input?: string) => runTool('kubectl', ['--kubeconfig', plane.kubeconfig, ...args], { input });
const helm = (args: string[]) => runTool('helm', args, { env: { HELM_CACHE_HOME: join(plane.dir, 'helm-cache'), HELM_CONFIG_HOME: join(plane.dir, 'helm-config') } });

async function render(valueSet: Pick<ValueSet, 'namespace' | 'args'>): Promise<{ yaml: string; objects: K8sObject[] }> {
  const result = await helm(['template', RELEASE, CHART, '--namespace', valueSet.namespace, '--kube-version', KUBE_VERSION, ...valueSet.args]);
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  const objects = kubernetesClient()
    .loadAllYaml(result.stdout)
    .filter((o): o is K8sObject => o !== null && typeof o === 'object');
  return { yaml: result.stdout, objects };
}

beforeAll(async () => {
  plane = await startControlPlane();
  for (const { namespace } of VALUE_SETS) {
    const created = await kubectl(['create', 'namespace', namespace]);
    expect(created.stderr).toBe('');
  }
});

afterAll(async () => {
  await plane?.stop();
});

describe.each(VALUE_SETS)('chart with $name values', (valueSet) => {
  test('helm lint passes', async () => {
    const lint = await helm(['lint', CHART, '--strict', '--kube-version', KUBE_VERSION, ...valueSet.args]);
    expect(lint.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
    expect(lint.code).toBe(0);
  });

  test('helm template renders what the values ask for, and the API server accepts every object', async () => {
    const { yaml, objects } = await render(valueSet);
    expect(objects.length).toBeGreaterThan(8);
    valueSet.check(objects);
    const applied = await kubectl(['apply', '--dry-run=server', '-n', valueSet.namespace, '-f', '-'], yaml);
    expect(applied.stderr).toBe('');
    expect(applied.code).toBe(0);
    const accepted = applied.stdout.trim().split('\n');
    expect(accepted).toHaveLength(objects.length);
    for (const line of accepted) expect(line).toMatch(/ (created|configured|unchanged) \(server dry run\)$/);
  });
});

test('every FLOTILLA_ variable the chart sets is a setting of libs/config, under the same name', async () => {
  const { objects } = await render({ namespace: 'default', args: [] });
  const known = new Set([...configKeys(), 'node'].map(envNameOf));
  const workloads = objects.filter((o) => o.kind === 'StatefulSet' || o.kind === 'Deployment').filter((o) => !o.metadata.name.endsWith('-nats'));
  expect(workloads).toHaveLength(3);
  const values = (readFileSync(join(CHART, 'values.yaml'), 'utf8').match(/^[a-zA-Z]+(?=:)/gm) ?? []).filter((k) => configKeys().includes(k));
  for (const workload of workloads) {
    const names = (workload.spec.template.spec.containers[0].env as { name: string }[]).map((e) => e.name).filter((n) => n.startsWith('FLOTILLA_'));
    for (const name of names) expect(known).toContain(name);
    // Each top-level value named like a setting reaches the containers.
    for (const key of values) expect(names).toContain(envNameOf(key));
  }
  expect(values.length).toBeGreaterThan(10);
});

test('values.schema.json and the cross-field rules refuse bad values with a message naming them', async () => {
  const bad: [string[], RegExp][] = [
    [['--set', 'replicas=0'], /replicas/],
    [['--set', 'mode=multi-master'], /mode/],
    [['--set', 'nats.url=http://nats:4222'], /url/],
    [['--set', 'replicaCount=3'], /replicaCount/],
    [['--set', 'leaseRenewMs=2000'], /leaseRenewMs \(2000\) must be at most half of leaseTtlMs/],
    [['--set', 'mode=sync', '--set', 'replicas=1'], /syncFollowers/],
    // The same cross-field rules as loadConfig: a pod would otherwise exit 2 and crash-loop.
    [['--set', 'leaseTtlMs=400', '--set', 'leaseRenewMs=200'], /leaseTtlMs \(400\) is too short for leaseRenewMs \(200\)/],
    [['--set', 'heartbeatIntervalMs=2000'], /must be at least twice heartbeatIntervalMs \(2000\)/],
    [['--set', 'apiPort=8080', '--set', 'httpPort=8080'], /apiPort and httpPort are both 8080/],
    [['--set', 'syncTimeoutMs=6000'], /syncTimeoutMs \(6000\) must be below requestTimeoutMs \(5000\)/],
    [['--set', 'syncTimeoutMs=100'], /syncTimeoutMs \(100\) must be at least twice heartbeatIntervalMs/],
    [['--set', 'failureTimeoutMs=50'], /failureTimeoutMs/],
    // The chart's lease (3000, renewed every 500) is valid 2400 ms after a renewal: 1900 ms once it
    // is due, less 20 ms of the per-turn SQL clock.
    [['--set', 'statementTimeoutMs=1880'], /statementTimeoutMs \(1880\) must be below 1880 ms/],
    [['--set', 'statementTimeoutMs=-1'], /statementTimeoutMs/],
    [['--set', 'statementTimeoutMs=5'], /statementTimeoutMs \(5\) must be 0 \(no deadline\) or at least 50 ms/],
    [['--set', 'monitorIntervalMs=5'], /monitorIntervalMs/],
  ];
  for (const [args, message] of bad) {
    const result = await helm(['template', RELEASE, CHART, '--kube-version', KUBE_VERSION, ...args]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(message);
  }
});

test('replica.updatePartition sets the StatefulSet partition (followers first in a rolling update); 0 leaves it out', async () => {
  const partitionOf = async (args: string[]) => {
    const result = await helm(['template', RELEASE, CHART, '--kube-version', KUBE_VERSION, ...args]);
    expect(result.code).toBe(0);
    const sts = result.stdout.split('\n---\n').find((doc) => /kind: StatefulSet/.test(doc) && /name: \S+-replica\n/.test(doc))!;
    return /rollingUpdate:\n\s+partition: (\d+)/.exec(sts)?.[1] ?? null;
  };
  expect(await partitionOf(['--set', 'replica.updatePartition=2'])).toBe('2');
  expect(await partitionOf([])).toBeNull();
});

test('a long release name still gives StatefulSet names short enough for their pods (≤ 52 characters)', async () => {
  const release = 'a'.repeat(53);
  const result = await helm(['template', release, CHART, '--kube-version', KUBE_VERSION]);
  expect(result.code).toBe(0);
  const names = [...result.stdout.matchAll(/kind: StatefulSet\nmetadata:\n  name: (\S+)/g)].map((m) => m[1]);
  expect(names).toContain(`${'a'.repeat(44)}-replica`);
  for (const n of names) expect(n.length).toBeLessThanOrEqual(52);
});

test('the replica ServiceAccount can use leases and label its pod, and nothing more', async () => {
  const namespace = 'helm-rbac';
  expect((await kubectl(['create', 'namespace', namespace])).code).toBe(0);
  const { objects } = await render({ namespace, args: [] });
  const rbac = objects.filter((o) => ['ServiceAccount', 'Role', 'RoleBinding'].includes(o.kind));
  expect(rbac.map((o) => o.kind).sort()).toEqual(['Role', 'RoleBinding', 'ServiceAccount']);
  const applied = await kubectl(['apply', '-n', namespace, '-f', '-'], rbac.map((o) => JSON.stringify(o)).join('\n'));
  expect(applied.stderr).toBe('');
  expect(applied.code).toBe(0);

  const serviceAccount = rbac.find((o) => o.kind === 'ServiceAccount')!.metadata.name;
  const replicaPodSa = find(objects, 'StatefulSet', `${RELEASE}-replica`)?.spec.template.spec.serviceAccountName;
  expect(replicaPodSa).toBe(serviceAccount);
  const canI = async (verb: string, resource: string) => {
    const r = await kubectl(['auth', 'can-i', verb, resource, '-n', namespace, `--as=system:serviceaccount:${namespace}:${serviceAccount}`]);
    return r.stdout.trim();
  };
  for (const verb of ['get', 'list', 'watch', 'create', 'update']) expect(`${verb} leases: ${await canI(verb, 'leases.coordination.k8s.io')}`).toBe(`${verb} leases: yes`);
  for (const verb of ['get', 'patch']) expect(`${verb} pods: ${await canI(verb, 'pods')}`).toBe(`${verb} pods: yes`);
  const denied: [string, string][] = [
    ['get', 'secrets'],
    ['list', 'secrets'],
    ['delete', 'pods'],
    ['create', 'pods'],
    ['delete', 'leases.coordination.k8s.io'],
    ['update', 'statefulsets.apps'],
    ['get', 'configmaps'],
  ];
  for (const [verb, resource] of denied) expect(`${verb} ${resource}: ${await canI(verb, resource)}`).toBe(`${verb} ${resource}: no`);
  // The Role is namespaced: no rights on leases elsewhere.
  const elsewhere = await kubectl(['auth', 'can-i', 'update', 'leases.coordination.k8s.io', '-n', 'default', `--as=system:serviceaccount:${namespace}:${serviceAccount}`]);
  expect(elsewhere.stdout.trim()).toBe('no');
});

describe('k8s/ (kustomize)', () => {
  test('is what k8s/generate.sh makes from the chart today', async () => {
    const out = tempDir('flotilla-k8s-manifests-');
    try {
      await promisify(execFile)('bash', [join(ROOT, 'k8s', 'generate.sh'), out], { env: { ...process.env, HELM: join(toolsBinDir(), 'helm') } });
      const generated = readdirSync(out).sort();
      const committed = readdirSync(join(ROOT, 'k8s')).filter((f) => f.endsWith('.yaml')).sort();
      expect(committed).toEqual(generated);
      for (const file of generated) expect(`${file}:\n${readFileSync(join(ROOT, 'k8s', file), 'utf8')}`).toBe(`${file}:\n${readFileSync(join(out, file), 'utf8')}`);
    } finally {
      removeTempDir(out);
    }
  });

  test('has the objects of the chart with default values, and the API server accepts them', async () => {
    const kustomized = await kubectl(['kustomize', join(ROOT, 'k8s')]);
    expect(kustomized.code).toBe(0);
    const objects = kubernetesClient().loadAllYaml(kustomized.stdout) as K8sObject[];
    const { objects: charted } = await render({ namespace: 'flotilla', args: [] });
    const ids = (list: K8sObject[]) => list.map((o) => `${o.kind}/${o.metadata.name}`).sort();
    expect(ids(objects.filter((o) => o.kind !== 'Namespace'))).toEqual(ids(charted));
    for (const o of objects) if (o.kind !== 'Namespace') expect(o.metadata.namespace).toBe('flotilla');
    // The Namespace for real (server dry-run does not create it for the objects inside).
    expect((await kubectl(['apply', '-f', join(ROOT, 'k8s', 'namespace.yaml')])).code).toBe(0);
    const applied = await kubectl(['apply', '--dry-run=server', '-k', join(ROOT, 'k8s')]);
    expect(applied.stderr).toBe('');
    expect(applied.code).toBe(0);
  });
});

test('helm install, upgrade --set replicas=5 and the NOTES commands work against the API server', async () => {
  const namespace = 'helm-install';
  const kube = ['--kubeconfig', plane.kubeconfig];
  const installed = await helm(['install', RELEASE, CHART, '-n', namespace, '--create-namespace', '--wait=false', ...kube]);
  expect(installed.stderr).toBe('');
  expect(installed.code).toBe(0);
  // NOTES.txt: how to reach the gateway and watch roles, with this release's names.
  expect(installed.stdout).toContain(`kubectl -n ${namespace} port-forward svc/${RELEASE}-gateway 8080:80`);
  expect(installed.stdout).toContain(`kubectl -n ${namespace} get pods -l app.kubernetes.io/instance=${RELEASE},app.kubernetes.io/component=replica -L flotilla.io/role -w`);
  expect(installed.stdout).toContain(`--set replicas=5`);

  const statefulSetReplicas = async () =>
    (await kubectl(['-n', namespace, 'get', 'statefulset', `${RELEASE}-replica`, '-o', 'jsonpath={.spec.replicas}'])).stdout;
  expect(await statefulSetReplicas()).toBe('3');
  const upgraded = await helm(['upgrade', RELEASE, CHART, '-n', namespace, '--reuse-values', '--set', 'replicas=5', ...kube]);
  expect(upgraded.code).toBe(0);
  expect(await statefulSetReplicas()).toBe('5');
  // kubectl scale works on the same object (no controller-manager here, so no pods appear).
  expect((await kubectl(['-n', namespace, 'scale', 'statefulset', `${RELEASE}-replica`, '--replicas=6'])).code).toBe(0);
  expect(await statefulSetReplicas()).toBe('6');
  const services = await kubectl(['-n', namespace, 'get', 'services', '-o', 'name']);
  expect(services.stdout.split('\n').filter(Boolean).sort()).toEqual(
    [`${RELEASE}-gateway`, `${RELEASE}-nats`, `${RELEASE}-replica`, `${RELEASE}-ro`, `${RELEASE}-rw`].map((s) => `service/${s}`),
  );
  const uninstalled = await helm(['uninstall', RELEASE, '-n', namespace, ...kube]);
  expect(uninstalled.code).toBe(0);
});
