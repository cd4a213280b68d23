/**
 * A real Kubernetes control plane as local processes, the way controller-runtime's envtest runs
 * one: etcd plus kube-apiserver on free loopback ports in a temporary directory, with freshly
 * generated certificates (openssl), an admin client certificate in group system:masters and an
 * admin kubeconfig. No kubelet, scheduler or controller-manager: objects are stored and validated,
 * Pods stay Pending, and namespaces get no default ServiceAccount (the ServiceAccount admission
 * plugin is disabled for that reason, as envtest does).
 *
 * The binaries come from the cache that scripts/k8s-tools.sh fills (FLOTILLA_TOOLS_DIR).
 */
import { ChildProcess, execFile, spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { keepTestDirs } from '@flotilla/testing';
import { freePort, toolPath } from './support';

const execFileAsync = promisify(execFile);

/** How long etcd and kube-apiserver get to become ready (first start after a cold cache is slow). */
const START_TIMEOUT_MS = 90_000;
/** Poll period of the readiness probes. */
const READY_POLL_MS = 50;
/** How long a process gets after SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 5_000;
/** Service IP range of the test cluster (never routed: nothing runs Pods). */
const SERVICE_CLUSTER_IP_RANGE = '10.96.0.0/16';

/** A running control plane; `stop()` ends every process it started and removes its files. */
export interface ControlPlane {
  /** Path of an admin kubeconfig (client certificate in system:masters). */
  kubeconfig: string;
  /** https://127.0.0.1:<port> of kube-apiserver. */
  server: string;
  /** Temporary directory holding certificates, data and logs (`etcd.log`, `kube-apiserver.log`). */
  dir: string;
  stop(): Promise<void>;
}

export interface ControlPlaneOptions {
  /**
   * Keep the temporary directory after stop (logs for debugging). Default: FLOTILLA_KEEP_K8S_DIR
   * or FLOTILLA_KEEP_TEST_DIRS set.
   */
  keepDir?: boolean;
}

/** Attempts at starting when a process exits early (a port taken between choosing and binding it). */
const START_ATTEMPTS_MAX = 3;

/** A server process ended before it was ready. */
class EarlyExitError extends Error {
  override readonly name = 'EarlyExitError';
}

/**
 * Starts etcd and kube-apiserver and resolves once /readyz answers ok. When a process exits
 * before it is ready (usually a port that another test took in the meantime), starts over on
 * new ports, up to START_ATTEMPTS_MAX times.
 */
export async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(options);
    } catch (err) {
      if (!(err instanceof Error && err.cause instanceof EarlyExitError) || attempt >= START_ATTEMPTS_MAX) throw err;
    }
  }
}

async function startOnce(options: ControlPlaneOptions): Promise<ControlPlane> {
  const etcdBin = toolPath('etcd');
  const apiserverBin = toolPath('kube-apiserver');
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-k8s-'));
  const children: ChildProcess[] = [];
  const keepDir = options.keepDir ?? (process.env.FLOTILLA_KEEP_K8S_DIR !== undefined || keepTestDirs());
  const stop = async () => {
    for (const child of children.reverse()) await stopProcess(child);
    if (!keepDir) rmSync(dir, { recursive: true, force: true });
  };
  try {
    const pki = await generatePki(dir);
    const [etcdClientPort, etcdPeerPort, apiPort] = await distinctFreePorts(3);
    const etcdUrl = `http://127.0.0.1:${etcdClientPort}`;
    const peerUrl = `http://127.0.0.1:${etcdPeerPort}`;
    const etcd = startProcess(dir, 'etcd', etcdBin, [
      `--name=flotilla-test`,
      `--data-dir=${join(dir, 'etcd-data')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=flotilla-test=${peerUrl}`,
      '--log-level=warn',
    ]);
    children.push(etcd);
    await untilReady(etcd, 'etcd /health', () => httpGetOk(`${etcdUrl}/health`));

    const server = `https://127.0.0.1:${apiPort}`;
    const apiserver = startProcess(dir, 'kube-apiserver', apiserverBin, [
      `--etcd-servers=${etcdUrl}`,
      `--etcd-prefix=/registry`,
      `--bind-address=127.0.0.1`,
      `--advertise-address=127.0.0.1`,
      `--secure-port=${apiPort}`,
      `--tls-cert-file=${pki.serverCert}`,
      `--tls-private-key-file=${pki.serverKey}`,
      `--client-ca-file=${pki.caCert}`,
      `--service-account-issuer=https://kubernetes.default.svc.cluster.local`,
      `--service-account-key-file=${pki.serviceAccountPublicKey}`,
      `--service-account-signing-key-file=${pki.serviceAccountKey}`,
      `--service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}`,
      // RBAC for `kubectl auth can-i --as`; Node authorizes kubelets (none here, but it is the
      // usual pair and keeps the authorizer chain realistic).
      '--authorization-mode=Node,RBAC',
      '--disable-admission-plugins=ServiceAccount',
      '--allow-privileged=true',
      `--cert-dir=${join(dir, 'apiserver-certs')}`,
      '--v=1',
    ]);
    children.push(apiserver);
    const kubeconfig = join(dir, 'admin.kubeconfig');
    writeFileSync(kubeconfig, adminKubeconfig(server, pki));
    await untilReady(apiserver, 'kube-apiserver /readyz', () => httpsGetOk(`${server}/readyz`, pki));
    return { kubeconfig, server, dir, stop };
  } catch (err) {
    const logs = ['etcd', 'kube-apiserver'].map((n) => `--- ${n}.log (tail) ---\n${tailOf(join(dir, `${n}.log`))}`).join('\n');
    await stop();
    throw new Error(`control plane did not start: ${(err as Error).message}\n${logs}`, { cause: err });
  }
}

interface Pki {
  caCert: string;
  serverCert: string;
  serverKey: string;
  adminCert: string;
  adminKey: string;
  serviceAccountKey: string;
  serviceAccountPublicKey: string;
}

/** CA, apiserver serving cert (127.0.0.1/localhost), admin client cert, service-account key pair. */
async function generatePki(dir: string): Promise<Pki> {
  const p = (name: string) => join(dir, name);
  const openssl = (args: string[]) => execFileAsync('openssl', args, { cwd: dir });
  const ecKey = (out: string) => openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', out]);
  await ecKey(p('ca.key'));
  await openssl([
    'req', '-x509', '-new', '-key', p('ca.key'), '-out', p('ca.crt'), '-days', '2', '-subj', '/CN=flotilla-test-ca',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
  ]);
  const issue = async (name: string, subject: string, extensions: string) => {
    await ecKey(p(`${name}.key`));
    await openssl(['req', '-new', '-key', p(`${name}.key`), '-out', p(`${name}.csr`), '-subj', subject]);
    writeFileSync(p(`${name}.ext`), extensions);
    await openssl([
      'x509', '-req', '-in', p(`${name}.csr`), '-CA', p('ca.crt'), '-CAkey', p('ca.key'), '-CAcreateserial',
      '-out', p(`${name}.crt`), '-days', '2', '-extfile', p(`${name}.ext`),
    ]);
  };
  await issue(
    'apiserver',
    '/CN=kube-apiserver',
    'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' +
      'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.96.0.1\n',
  );
  await issue(
    'admin',
    '/O=system:masters/CN=flotilla-admin',
    'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n',
  );
  await openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', p('sa.key')]);
  await openssl(['pkey', '-in', p('sa.key'), '-pubout', '-out', p('sa.pub')]);
  return {
    caCert: p('ca.crt'),
    serverCert: p('apiserver.crt'),
    serverKey: p('apiserver.key'),
    adminCert: p('admin.crt'),
    adminKey: p('admin.key'),
    serviceAccountKey: p('sa.key'),
    serviceAccountPublicKey: p('sa.pub'),
  };
}

function adminKubeconfig(server: string, pki: Pki): string {
  const b64 = (path: string) => readFileSync(path).toString('base64');
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: flotilla-test',
    '  cluster:',
    `    server: ${server}`,
    `    certificate-authority-data: ${b64(pki.caCert)}`,
    'users:',
    '- name: flotilla-admin',
    '  user:',
    `    client-certificate-data: ${b64(pki.adminCert)}`,
    `    client-key-data: ${b64(pki.adminKey)}`,
    'contexts:',
    '- name: flotilla-test',
    '  context:',
    '    cluster: flotilla-test',
    '    user: flotilla-admin',
    '    namespace: default',
    'current-context: flotilla-test',
    '',
  ].join('\n');
}

/**
 * Polls `probe` until it answers true; throws EarlyExitError as soon as `child` has exited, and a
 * timeout error after START_TIMEOUT_MS.
 */
async function untilReady(child: ChildProcess, what: string, probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new EarlyExitError(`${what}: the process exited (${child.exitCode ?? child.signalCode}) before it was ready`);
    }
    if (await probe()) return;
    if (Date.now() > deadline) throw new Error(`${what} not ready after ${START_TIMEOUT_MS}ms`);
    await new Promise((r) => setTimeout(r, READY_POLL_MS));
  }
}

function startProcess(dir: string, name: string, bin: string, args: string[]): ChildProcess {
  const log = createWriteStream(join(dir, `${name}.log`));
  const child = spawn(bin, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  child.once('exit', () => log.end());
  // A test run that dies without stop() must not leave servers behind.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  child.once('exit', () => process.removeListener('exit', killOnExit));
  return child;
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
  await exited;
  clearTimeout(timer);
}

async function distinctFreePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

function httpGetOk(url: string): Promise<boolean> {
  return fetch(url, { signal: AbortSignal.timeout(2000) }).then(
    (r) => r.ok,
    () => false,
  );
}

function httpsGetOk(url: string, pki: Pki): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(
      url,
      { ca: readFileSync(pki.caCert), cert: readFileSync(pki.adminCert), key: readFileSync(pki.adminKey), timeout: 2000 },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      },
    );
    req.once('error', () => resolve(false));
    req.once('timeout', () => req.destroy());
    req.end();
  });
}

function tailOf(path: string, bytes = 4000): string {
  try {
    const text = readFileSync(path, 'utf8');
    return text.slice(-bytes);
  } catch {
    return '(no log)';
  }
}
