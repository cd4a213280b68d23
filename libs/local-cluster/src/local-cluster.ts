/**
 * LocalCluster: a process supervisor for a whole Flotilla cluster on one machine, used by
 * `flotilla up` and by integration/fault tests alike. It plays the part Kubernetes plays in
 * production: one nats-server (unless an existing one is given), N replicas (a StatefulSet: stable
 * names replica-<i>, one data dir each), optionally two failover monitors (monitor-0, monitor-1) and the gateway. A process that dies is
 * started again with the same name, port and data dir after a doubling backoff, like a pod.
 * The state of every process is kept in <dataDir>/cluster.json.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { createLogger, Logger } from '@flotilla/logging';
import { restartDelayMs, RESTART_BACKOFF_RESET_AFTER_MS } from './backoff';
import { ChildHandle, ExitStatus, isAlive, spawnChild, STOP_GRACE_MS } from './child-process';
import { ClusterFile, ClusterProcessInfo, ProcessKind, ProcessState, readClusterFile, writeClusterFile } from './cluster-file';
import { freePort } from './free-port';
import { findNatsServerBinary, NatsServer, probeNats, startNatsServer } from './nats-server';
import { AppName, appEntry, findRepoRoot } from './repo-root';

/** Default number of replicas of `flotilla up`. */
export const DEFAULT_REPLICAS = 3;
/** Default gateway port of `flotilla up`. */
export const DEFAULT_GATEWAY_PORT = 8080;
/** Most replicas a local cluster runs (each is a node process; the machine is the limit). */
export const MAX_REPLICAS = 32;
/** How long a given NATS URL gets to answer before start() gives up. */
const NATS_PROBE_TIMEOUT_MS = 3000;
/** Failover monitors a cluster runs when the monitor is enabled: monitor-0 and monitor-1. */
export const MONITORS = 2;
/** How long {@link LocalCluster.waitUntilReady} waits by default. */
export const READY_TIMEOUT_MS = 60_000;
/** Log lines of each process quoted when the cluster does not get ready. */
export const READY_FAILURE_LOG_LINES = 8;

export interface LocalClusterOptions {
  /** Root of every file of the cluster: nats/, replica-<i>/, logs/, cluster.json. */
  dataDir: string;
  /** Number of replicas at start. Default {@link DEFAULT_REPLICAS}. */
  replicas?: number;
  /** Gateway HTTP port; 0 picks a free one. Default {@link DEFAULT_GATEWAY_PORT}. */
  port?: number;
  /** Use this NATS server instead of starting one (the cluster then never stops it). */
  natsUrl?: string;
  /** Start a process again when it dies. Default true. */
  restart?: boolean;
  /** Cluster name (FLOTILLA_CLUSTER). Default `flotilla`. */
  cluster?: string;
  /** Extra environment for every Flotilla process (replicas, monitor, gateway), e.g. FLOTILLA_MODE. */
  env?: Record<string, string>;
  /** Extra environment for replicas only (applied after `env`). */
  replicaEnv?: Record<string, string>;
  /** Run the failover monitors (monitor-0, monitor-1): true, false, or 'auto' (when dist/apps/monitor is built). Default 'auto'. */
  monitor?: boolean | 'auto';
  /**
   * NATS URL for one process instead of the cluster's, e.g. through a per-replica TcpProxy so a
   * fault test can partition that replica alone; undefined keeps the cluster's URL.
   */
  natsUrlFor?: (name: string) => string | undefined;
  /** Supervisor log; JSON lines on stdout by default. */
  logger?: Logger;
  /** Repository root holding dist/ (found from this file by default). */
  root?: string;
  /** How to run an app; by default `node <root>/dist/apps/<app>/src/main.js`. Tests use it for stubs. */
  command?: (app: AppName) => { command: string; args: string[] };
  /** SIGTERM → SIGKILL grace per process on stop. Default {@link STOP_GRACE_MS}. */
  stopGraceMs?: number;
}

/** What the supervisor can start, stop and signal: a child process or the nats-server handle. */
interface Runnable {
  readonly pid: number;
  readonly exited: Promise<ExitStatus | void>;
  readonly running: boolean;
  kill(signal?: NodeJS.Signals): void;
  pause(): void;
  resume(): void;
  stop(graceMs?: number): Promise<unknown>;
}

interface Supervised {
  name: string;
  kind: ProcessKind;
  ports: Record<string, number>;
  logFile: string;
  dataDir?: string;
  restarts: number;
  state: ProcessState;
  /** False once the process was stopped on purpose: its exit is then not a crash. */
  wanted: boolean;
  /** Consecutive quick crashes, for the backoff. */
  crashes: number;
  startedAtMs: number;
  current?: Runnable;
  restartTimer?: NodeJS.Timeout;
  launch: () => Promise<Runnable>;
}

const NAME_PATTERN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Thrown for misuse or a start that cannot succeed; the message says what to do. */
export class LocalClusterError extends Error {
  override readonly name = 'LocalClusterError';
}

export class LocalCluster {
  readonly dataDir: string;
  readonly clusterName: string;
  private readonly options: LocalClusterOptions;
  private readonly log: Logger;
  private readonly root: string;
  private readonly processes = new Map<string, Supervised>();
  private nats?: NatsServer;
  private natsUrlValue?: string;
  private gatewayPort = 0;
  private nextReplicaIndex = 0;
  private started = false;
  /** True once this supervisor owns the data dir: only then does it write cluster.json. */
  private claimed = false;
  private stopping = false;
  private stopped?: Promise<void>;
  private readonly startedAt = new Date().toISOString();

  constructor(options: LocalClusterOptions) {
    const replicas = options.replicas ?? DEFAULT_REPLICAS;
    if (!Number.isInteger(replicas) || replicas < 0 || replicas > MAX_REPLICAS) {
      throw new LocalClusterError(`replicas must be an integer from 0 to ${MAX_REPLICAS}, got ${replicas}`);
    }
    const port = options.port ?? DEFAULT_GATEWAY_PORT;
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new LocalClusterError(`port must be 0..65535, got ${port}`);
    const cluster = options.cluster ?? 'flotilla';
    if (!NAME_PATTERN.test(cluster)) throw new LocalClusterError(`cluster name "${cluster}" must match ${NAME_PATTERN}`);
    this.options = { ...options, replicas, port, cluster };
    this.dataDir = path.resolve(options.dataDir);
    this.clusterName = cluster;
    this.log = options.logger ?? createLogger({ app: 'local-cluster', cluster });
    this.root = options.root ?? findRepoRoot();
  }

  /** nats:// URL the cluster uses (valid after start). */
  get natsUrl(): string {
    if (!this.natsUrlValue) throw new LocalClusterError('cluster not started');
    return this.natsUrlValue;
  }

  /** http:// URL of the gateway (valid after start). */
  get gatewayUrl(): string {
    if (!this.gatewayPort) throw new LocalClusterError('cluster not started');
    return `http://127.0.0.1:${this.gatewayPort}`;
  }

  /** Names of the replicas, in index order. */
  get replicaNames(): string[] {
    return [...this.processes.values()].filter((p) => p.kind === 'replica').map((p) => p.name);
  }

  /**
   * Starts nats-server (unless natsUrl was given), the replicas, the monitor and the gateway, and
   * writes cluster.json. Resolves when every process is spawned (not when it is ready: see
   * {@link waitUntilReady}). On failure, whatever was started is stopped again.
   */
  async start(): Promise<void> {
    if (this.started) throw new LocalClusterError('cluster already started');
    this.checkBuilt('replica');
    this.checkBuilt('gateway');
    this.started = true;
    fs.mkdirSync(path.join(this.dataDir, 'logs'), { recursive: true });
    this.claimDataDir();
    this.claimed = true;
    try {
      await this.startNats();
      this.gatewayPort = this.options.port ? await this.checkPortFree(this.options.port) : await freePort();
      for (let i = 0; i < (this.options.replicas ?? DEFAULT_REPLICAS); i++) await this.addReplica();
      if (this.monitorWanted()) {
        // Two, as in Kubernetes (a Deployment of 2): one holds the monitor lease and acts, the other stands by.
        for (let i = 0; i < MONITORS; i++) await this.startApp(this.defineApp('monitor', `monitor-${i}`, await freePort()));
      }
      await this.startApp(this.defineApp('gateway', 'gateway', this.gatewayPort));
      this.log.info('local cluster started', { dataDir: this.dataDir, gatewayUrl: this.gatewayUrl, natsUrl: this.natsUrl });
    } catch (e) {
      await this.stop();
      throw e;
    }
  }

  /** Adds replica-<next index> (a fresh data dir) and starts it; resolves to its name. */
  async addReplica(): Promise<string> {
    this.assertRunning();
    if (this.replicaNames.length >= MAX_REPLICAS) throw new LocalClusterError(`at most ${MAX_REPLICAS} replicas`);
    const name = `replica-${this.nextReplicaIndex++}`;
    const proc = this.defineApp('replica', name, await freePort());
    proc.ports.api = await freePort();
    await this.startApp(proc);
    return name;
  }

  /** Sends `signal` (default SIGKILL) to a process; the supervisor restarts it unless restart is off. */
  killReplica(name: string, signal: NodeJS.Signals = 'SIGKILL'): void {
    this.signal(name, signal);
  }

  /** Sends `signal` to any process of the cluster by name (replica-0, gateway, nats, monitor-0, monitor-1). */
  signal(name: string, signal: NodeJS.Signals): void {
    const proc = this.get(name);
    if (!proc.current?.running) throw new LocalClusterError(`${name} is not running (state ${proc.state})`);
    this.log.info('signal sent', { process: name, signal, pid: proc.current.pid });
    proc.current.kill(signal);
  }

  /** Freezes a process (SIGSTOP): it keeps its connections but stops answering and heartbeating. */
  pause(name: string): void {
    this.signal(name, 'SIGSTOP');
  }

  /** Continues a process frozen by {@link pause} (SIGCONT). */
  resume(name: string): void {
    this.signal(name, 'SIGCONT');
  }

  /** Stops one process on purpose (SIGTERM, then SIGKILL after the grace period); it stays down. */
  async stopProcess(name: string): Promise<void> {
    const proc = this.get(name);
    proc.wanted = false;
    clearTimeout(proc.restartTimer);
    proc.restartTimer = undefined;
    await proc.current?.stop(this.options.stopGraceMs ?? STOP_GRACE_MS);
    proc.state = 'stopped';
    this.writeState();
  }

  /** Starts again a process stopped by {@link stopProcess} or one that exited with restart off. */
  async startProcess(name: string): Promise<void> {
    this.assertRunning();
    const proc = this.get(name);
    if (proc.current?.running) throw new LocalClusterError(`${name} is already running`);
    clearTimeout(proc.restartTimer);
    proc.restartTimer = undefined;
    proc.crashes = 0;
    await this.repickPortIfTaken(proc);
    await this.startApp(proc);
  }

  /** SQLite file of a replica: <dataDir>/<name>/db.sqlite. */
  replicaDbFile(name: string): string {
    const proc = this.get(name);
    if (proc.kind !== 'replica' || !proc.dataDir) throw new LocalClusterError(`${name} is not a replica`);
    return path.join(proc.dataDir, 'db.sqlite');
  }

  /** http:// URL of a process's own HTTP server (health, metrics). */
  httpUrl(name: string): string {
    const port = this.get(name).ports.http;
    if (!port) throw new LocalClusterError(`${name} has no HTTP port`);
    return `http://127.0.0.1:${port}`;
  }

  /** http:// URL of a replica's public REST API (the gateway's API, served by the replica). */
  apiUrl(name: string): string {
    const port = this.get(name).ports.api;
    if (!port) throw new LocalClusterError(`${name} serves no API`);
    return `http://127.0.0.1:${port}`;
  }

  /** Current pid of a process, or undefined while it is down. */
  pid(name: string): number | undefined {
    const current = this.get(name).current;
    return current?.running ? current.pid : undefined;
  }

  /** A snapshot of what cluster.json says. */
  describe(): ClusterFile {
    return {
      cluster: this.clusterName,
      supervisorPid: process.pid,
      natsUrl: this.natsUrlValue ?? '',
      gatewayUrl: this.gatewayPort ? this.gatewayUrl : '',
      dataDir: this.dataDir,
      startedAt: this.startedAt,
      updatedAt: new Date().toISOString(),
      processes: [...this.processes.values()].map((p) => this.info(p)),
    };
  }

  /**
   * Resolves once every replica's and the gateway's GET /readyz answers 200, the gateway's naming
   * a leader (its readiness alone does not need one), and the monitor's /healthz, if any; rejects
   * after `timeoutMs` naming the processes that are not ready.
   */
  async waitUntilReady(timeoutMs = READY_TIMEOUT_MS): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let notReady: string[] = [];
    while (Date.now() < deadline) {
      if (this.stopping) throw new LocalClusterError('cluster stopped while waiting for it to be ready');
      const checks = [...this.processes.values()]
        .filter((p) => p.ports.http)
        .map(async (p) => {
          const url = `http://127.0.0.1:${p.ports.http}${p.kind === 'monitor' ? '/healthz' : '/readyz'}`;
          const ready = await httpOk(url, p.kind === 'gateway' ? (body) => typeof (body as { leader?: unknown } | null)?.leader === 'string' : undefined);
          return ready ? undefined : p.name;
        });
      notReady = (await Promise.all(checks)).filter((n): n is string => n !== undefined);
      if (notReady.length === 0) return;
      await delay(200);
    }
    // The data dir of a test cluster is gone by the time anyone reads this: say here what went wrong.
    const tails = [...notReady, 'nats']
      .filter((n) => this.processes.has(n))
      .map((n) => {
        const p = this.processes.get(n)!;
        return `--- ${n} (${p.state}, pid ${p.current?.pid ?? '-'}), last lines of ${p.logFile}:\n${tailOf(p.logFile, READY_FAILURE_LOG_LINES)}`;
      });
    throw new LocalClusterError(`not ready after ${timeoutMs}ms: ${notReady.join(', ')} (see ${path.join(this.dataDir, 'logs')})\n${tails.join('\n')}`);
  }

  /**
   * Stops everything: gateway and monitor first (no new work), then the replicas, then nats-server;
   * SIGTERM, then SIGKILL after the grace period. Resolves when no process is left. Idempotent.
   */
  stop(): Promise<void> {
    if (!this.stopped) this.stopped = this.stopAll();
    return this.stopped;
  }

  /**
   * SIGKILLs every process at once, synchronously: for an exit or crash of the supervisor itself,
   * when there is no time for {@link stop}. Nothing is restarted afterwards.
   */
  killAllNow(): void {
    this.stopping = true;
    for (const p of this.processes.values()) {
      p.wanted = false;
      clearTimeout(p.restartTimer);
      p.current?.kill('SIGCONT');
      p.current?.kill('SIGKILL');
    }
  }

  private async stopAll(): Promise<void> {
    this.stopping = true;
    this.log.info('stopping local cluster');
    const all = [...this.processes.values()];
    for (const p of all) {
      p.wanted = false;
      clearTimeout(p.restartTimer);
      p.restartTimer = undefined;
    }
    const grace = this.options.stopGraceMs ?? STOP_GRACE_MS;
    const stopKinds = async (kinds: ProcessKind[]) => {
      await Promise.all(
        all
          .filter((p) => kinds.includes(p.kind))
          .map(async (p) => {
            await p.current?.stop(grace);
            p.state = 'stopped';
          }),
      );
    };
    await stopKinds(['gateway', 'monitor']);
    await stopKinds(['replica']);
    await stopKinds(['nats']);
    this.writeState();
    this.log.info('local cluster stopped');
  }

  // ---- internals --------------------------------------------------------------------------

  private get(name: string): Supervised {
    const proc = this.processes.get(name);
    if (!proc) throw new LocalClusterError(`no process named "${name}" (have: ${[...this.processes.keys()].join(', ')})`);
    return proc;
  }

  private assertRunning(): void {
    if (!this.started) throw new LocalClusterError('cluster not started');
    if (this.stopping) throw new LocalClusterError('cluster is stopping');
  }

  private monitorWanted(): boolean {
    const monitor = this.options.monitor ?? 'auto';
    if (monitor === 'auto') return this.options.command !== undefined ? false : fs.existsSync(appEntry('monitor', this.root));
    if (monitor) this.checkBuilt('monitor');
    return monitor;
  }

  private checkBuilt(app: AppName): void {
    if (this.options.command) return;
    const entry = appEntry(app, this.root);
    if (!fs.existsSync(entry)) throw new LocalClusterError(`${entry} does not exist: run \`npm run build\` first`);
  }

  /**
   * Refuses a data dir that a live supervisor uses (two clusters would share replica files), and
   * kills processes that a dead supervisor left behind (it was SIGKILLed), as listed in cluster.json.
   */
  private claimDataDir(): void {
    const previous = readClusterFile(this.dataDir);
    if (!previous) return;
    // A supervisor that stopped cleanly marked every process stopped: its pid may be anyone's now.
    const listed = previous.processes ?? [];
    const stoppedCleanly = listed.length > 0 && listed.every((p) => p.state === 'stopped' || p.state === 'exited');
    if (!stoppedCleanly && previous.supervisorPid !== process.pid && isAlive(previous.supervisorPid) && looksLikeOurs(previous.supervisorPid)) {
      throw new LocalClusterError(`data dir ${this.dataDir} is in use by a running supervisor (pid ${previous.supervisorPid})`);
    }
    for (const p of previous.processes ?? []) {
      if (p.pid && isAlive(p.pid) && writesLogsUnder(p.pid, this.dataDir)) {
        this.log.warn('killing process left by a previous supervisor', { process: p.name, pid: p.pid });
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          // Gone meanwhile.
        }
      }
    }
  }

  private async checkPortFree(port: number): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      const server = net.createServer();
      server.once('error', (e: NodeJS.ErrnoException) =>
        reject(new LocalClusterError(`gateway port ${port} is not available (${e.code}): choose another with --port`)),
      );
      server.listen(port, '127.0.0.1', () => server.close(() => resolve()));
    });
    return port;
  }

  private async startNats(): Promise<void> {
    if (this.options.natsUrl) {
      // Fail now with a clear message rather than let every replica crash-loop on it.
      const url = new URL(this.options.natsUrl);
      if (url.protocol === 'nats:' && !(await probeNats(Number(url.port || 4222), NATS_PROBE_TIMEOUT_MS, url.hostname))) {
        throw new LocalClusterError(`no NATS server answers at ${this.options.natsUrl}: start one, or leave out the NATS URL to let the cluster start its own`);
      }
      this.natsUrlValue = this.options.natsUrl;
      return;
    }
    const storeDir = path.join(this.dataDir, 'nats');
    const logFile = path.join(this.dataDir, 'logs', 'nats.log');
    const proc: Supervised = {
      name: 'nats',
      kind: 'nats',
      ports: {},
      logFile,
      restarts: 0,
      state: 'starting',
      wanted: true,
      crashes: 0,
      startedAtMs: 0,
      launch: async () => {
        if (!this.nats) {
          this.nats = await startNatsServer({ jetstream: true, dir: storeDir, logFile });
          proc.ports.client = this.nats.port;
          this.natsUrlValue = this.nats.url;
        } else {
          // Same port and store dir, so clients reconnect and JetStream keeps the lease bucket.
          await this.nats.restart();
        }
        return this.nats;
      },
    };
    findNatsServerBinary();
    this.processes.set(proc.name, proc);
    await this.startApp(proc);
    if (!proc.current) throw new LocalClusterError(`nats-server did not start; see ${logFile}`);
  }

  private defineApp(app: AppName, name: string, httpPort: number): Supervised {
    const kind: ProcessKind = app;
    const dataDir = app === 'gateway' ? undefined : path.join(this.dataDir, name);
    if (dataDir) fs.mkdirSync(dataDir, { recursive: true });
    const logFile = path.join(this.dataDir, 'logs', `${name}.log`);
    const proc: Supervised = {
      name,
      kind,
      ports: { http: httpPort },
      logFile,
      dataDir,
      restarts: 0,
      state: 'starting',
      wanted: true,
      crashes: 0,
      startedAtMs: 0,
      launch: async () => {
        const env: NodeJS.ProcessEnv = {
          ...process.env,
          ...this.options.env,
          ...(app === 'replica' ? this.options.replicaEnv : {}),
          FLOTILLA_CLUSTER: this.clusterName,
          FLOTILLA_NATS_URL: this.options.natsUrlFor?.(name) ?? this.natsUrl,
          FLOTILLA_HTTP_PORT: String(proc.ports.http),
        };
        if (proc.ports.api) env.FLOTILLA_API_PORT = String(proc.ports.api);
        if (dataDir) {
          env.FLOTILLA_NODE = name;
          env.FLOTILLA_DATA_DIR = dataDir;
        }
        const { command, args } = this.options.command?.(app) ?? { command: process.execPath, args: [appEntry(app, this.root)] };
        return spawnChild({ command, args, env, logFile, cwd: this.root });
      },
    };
    this.processes.set(name, proc);
    return proc;
  }

  /** Launches a process and watches it; a failed launch counts as a crash (and is retried). */
  private async startApp(proc: Supervised): Promise<void> {
    proc.wanted = true;
    proc.state = 'starting';
    let current: Runnable;
    try {
      current = await proc.launch();
    } catch (e) {
      this.log.error('process failed to start', { process: proc.name, error: (e as Error).message });
      if (proc.kind === 'nats' && !this.nats) throw e; // Nothing works without it: fail the start.
      this.onExit(proc, undefined);
      return;
    }
    if (!proc.wanted || this.stopping) {
      // Stopped while it was being launched: do not leave it behind.
      await current.stop(this.options.stopGraceMs ?? STOP_GRACE_MS);
      proc.state = 'stopped';
      this.writeState();
      return;
    }
    proc.current = current;
    proc.startedAtMs = Date.now();
    proc.state = 'running';
    this.log.info('process started', { process: proc.name, kind: proc.kind, pid: current.pid, restarts: proc.restarts, logFile: proc.logFile });
    this.writeState();
    const pid = current.pid;
    void current.exited.then((status) => {
      // A stale watcher (the process was replaced meanwhile) has nothing to say.
      if (proc.current !== current) return;
      this.onExit(proc, status ?? undefined, pid);
    });
  }

  private onExit(proc: Supervised, status: ExitStatus | undefined, pid?: number): void {
    const upMs = proc.startedAtMs ? Date.now() - proc.startedAtMs : 0;
    if (!proc.wanted || this.stopping) {
      proc.state = 'stopped';
      this.writeState();
      return;
    }
    this.log.warn('process exited', { process: proc.name, pid, code: status?.code, signal: status?.signal, upMs });
    if (this.options.restart === false) {
      proc.state = 'exited';
      this.writeState();
      return;
    }
    if (upMs >= RESTART_BACKOFF_RESET_AFTER_MS) proc.crashes = 0;
    const delayMs = restartDelayMs(proc.crashes++);
    proc.state = 'restarting';
    this.writeState();
    this.log.info('restarting process', { process: proc.name, inMs: delayMs, attempt: proc.crashes });
    proc.restartTimer = setTimeout(() => {
      proc.restartTimer = undefined;
      if (!proc.wanted || this.stopping) return;
      proc.restarts++;
      void this.repickPortIfTaken(proc).then(() => this.startApp(proc));
    }, delayMs);
  }

  /**
   * While a replica or monitor was down, something else may have bound its HTTP or API port (ports are
   * only "free a moment ago"): then it gets a new free port rather than crash-looping on the old
   * one. nats-server and the gateway keep theirs: clients are configured with them.
   */
  private async repickPortIfTaken(proc: Supervised): Promise<void> {
    if (proc.kind !== 'replica' && proc.kind !== 'monitor') return;
    for (const which of ['http', 'api']) {
      const port = proc.ports[which];
      if (!port || (await isPortFree(port))) continue;
      proc.ports[which] = await freePort();
      this.log.warn(`${which} port taken while the process was down: using another`, { process: proc.name, from: port, to: proc.ports[which] });
    }
  }

  private info(p: Supervised): ClusterProcessInfo {
    const info: ClusterProcessInfo = {
      name: p.name,
      kind: p.kind,
      pid: p.current?.running ? p.current.pid : null,
      ports: { ...p.ports },
      logFile: p.logFile,
      restarts: p.restarts,
      state: p.state,
    };
    if (p.dataDir) info.dataDir = p.dataDir;
    return info;
  }

  private writeState(): void {
    if (!this.claimed) return;
    try {
      writeClusterFile(this.dataDir, this.describe());
    } catch (e) {
      this.log.error('cannot write cluster.json', { error: (e as Error).message });
    }
  }
}

/** True when /proc says the pid runs node or nats-server (guards against a recycled pid). */
function looksLikeOurs(pid: number): boolean {
  try {
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return /nats-server|node|flotilla/.test(cmdline);
  } catch {
    // No /proc (macOS): trust the pid.
    return true;
  }
}

/**
 * True when the process's stdout or stderr is a file under `dataDir`: every child this supervisor
 * starts logs to <dataDir>/logs, so a recycled pid (any other process) is never taken for ours.
 * Without /proc (macOS), the command-line guess above.
 */
function writesLogsUnder(pid: number, dataDir: string): boolean {
  if (!fs.existsSync('/proc/self/fd')) return looksLikeOurs(pid);
  for (const fd of [1, 2]) {
    try {
      if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith(dataDir + path.sep)) return true;
    } catch {
      // Not ours to read, or gone.
    }
  }
  return false;
}

function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** The last `lines` lines of a log file (of its last 64 KiB), or why it could not be read. */
export function tailOf(file: string, lines: number): string {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const length = Math.min(size, 64 * 1024);
      const buf = Buffer.alloc(length);
      fs.readSync(fd, buf, 0, length, size - length);
      const all = buf.toString('utf8').split('\n').filter((l) => l.length > 0);
      return all.slice(-lines).join('\n') || '(empty)';
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    return `(unreadable: ${(err as Error).message})`;
  }
}

/** True when `url` answers 200 (and its JSON body passes `accept`, if given). */
async function httpOk(url: string, accept?: (body: unknown) => boolean): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    const text = await res.text();
    if (res.status !== 200) return false;
    return accept === undefined || accept(JSON.parse(text));
  } catch {
    return false;
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
