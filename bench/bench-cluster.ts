/**
 * A LocalCluster for one benchmark section: temp data dir, gateway on a free port, supervisor log
 * kept in memory (stdout is for the tables), a NATS connection for status requests, and the few
 * helpers the sections share (leader, positions, convergence, log lines). `stop()` removes it all.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { connect, NatsConnection } from 'nats';
import { findRepoRoot, LocalCluster, LocalClusterOptions } from '@flotilla/local-cluster';
import { MemoryLogger } from '@flotilla/logging';
import { decodeEnvelope, encode, PROTOCOL_VERSION, StatusReply, subjectsFor, throwIfError } from '@flotilla/protocol';
import { httpJson, waitFor } from '@flotilla/testing';

let root: string | undefined;

/**
 * Makes every cluster of this run start its processes from a private copy of the built tree (see
 * main.ts): dist/ is shared with other sessions that rebuild it, and a replica restarted in the
 * middle of a run must run the code the run started with.
 */
export function useRoot(dir: string): void {
  root = dir;
}

/** Root of the tree the clusters run from (the private copy, once {@link useRoot} was called). */
export function benchRoot(): string {
  return root ?? findRepoRoot();
}

/** Every live bench cluster, so an interrupted run can kill them all (see main.ts). */
export const liveClusters = new Set<BenchCluster>();

/** How long a fresh cluster gets to be ready and elect a leader. */
const READY_TIMEOUT_MS = 90_000;
/** How long followers get to reach the leader's LSN between two measurements. */
export const CONVERGE_TIMEOUT_MS = 120_000;

/** A parsed JSON log line of a replica. */
export interface LogLine {
  msg: string;
  [field: string]: unknown;
}

export class BenchCluster {
  readonly cluster: LocalCluster;
  readonly clusterName: string;
  nc!: NatsConnection;
  private keepDir: boolean;

  private constructor(options: LocalClusterOptions, keepDir: boolean) {
    this.cluster = new LocalCluster(options);
    this.clusterName = options.cluster ?? 'flotilla';
    this.keepDir = keepDir;
  }

  /** Starts a cluster of `replicas`, waits until it is ready and has a leader, creates `ddl`. */
  static async start(options: Partial<LocalClusterOptions> & { replicas: number; ddl?: string[]; keepDir?: boolean }): Promise<BenchCluster> {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-bench-'));
    const bc = new BenchCluster({ port: 0, monitor: false, logger: new MemoryLogger({ app: 'local-cluster' }), root: benchRoot(), ...options, dataDir }, options.keepDir ?? false);
    liveClusters.add(bc);
    try {
      await bc.cluster.start();
      await bc.cluster.waitUntilReady(READY_TIMEOUT_MS);
      bc.nc = await connect({ servers: bc.cluster.natsUrl, maxReconnectAttempts: -1 });
      await bc.leader();
      for (const sql of options.ddl ?? []) await bc.execute(sql);
    } catch (e) {
      await bc.stop();
      throw e;
    }
    return bc;
  }

  get gatewayUrl(): string {
    return this.cluster.gatewayUrl;
  }

  get ackSubject(): string {
    return subjectsFor(this.clusterName).ack;
  }

  get logSubject(): string {
    return subjectsFor(this.clusterName).log;
  }

  async execute(sql: string, params?: unknown[]): Promise<{ lsn: string; epoch: number }> {
    const r = await httpJson('POST', `${this.gatewayUrl}/v1/execute`, { statements: [{ sql, params }] }, { timeoutMs: 30_000 });
    if (r.status !== 200) throw new Error(`execute ${sql}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body as { lsn: string; epoch: number };
  }

  /** The leader named by GET /v1/cluster (waits for one). */
  async leader(timeoutMs = READY_TIMEOUT_MS): Promise<string> {
    return waitFor(
      async () => {
        const r = await httpJson('GET', `${this.gatewayUrl}/v1/cluster`, undefined, { timeoutMs: 2000 });
        return r.status === 200 && r.body.leader ? (r.body.leader as string) : null;
      },
      { what: 'a leader in /v1/cluster', timeoutMs, intervalMs: 100 },
    );
  }

  async clusterView(): Promise<{ leader: string | null; epoch: number; nodes: { name: string; role: string; lsn: string; healthy: boolean }[] }> {
    const r = await httpJson('GET', `${this.gatewayUrl}/v1/cluster`, undefined, { timeoutMs: 2000 });
    if (r.status !== 200) throw new Error(`GET /v1/cluster: ${r.status}`);
    return r.body;
  }

  async status(node: string, timeoutMs = 2000): Promise<StatusReply> {
    const m = await this.nc.request(subjectsFor(this.clusterName).control(node), encode({ type: 'status', v: PROTOCOL_VERSION }), { timeout: timeoutMs });
    const r = decodeEnvelope(m.data);
    throwIfError(r);
    return r as unknown as StatusReply;
  }

  async lsnOf(node: string): Promise<number> {
    return Number((await this.status(node)).heartbeat.lsn);
  }

  /** Waits until every running replica has the leader's last LSN; returns that LSN. */
  async converged(timeoutMs = CONVERGE_TIMEOUT_MS, names = this.cluster.replicaNames): Promise<number> {
    const leader = await this.leader();
    return waitFor(
      async () => {
        const target = await this.lsnOf(leader);
        const lsns = await Promise.all(names.map((n) => this.lsnOf(n).catch(() => -1)));
        return lsns.every((l) => l === target) ? target : null;
      },
      { what: 'every replica at the leader LSN', timeoutMs, intervalMs: 100 },
    );
  }

  logFile(name: string): string {
    return path.join(this.cluster.dataDir, 'logs', `${name}.log`);
  }

  /** Bytes of a process's log file now: pass it to {@link logLines} to read only what follows. */
  logOffset(name: string): number {
    try {
      return fs.statSync(this.logFile(name)).size;
    } catch {
      return 0;
    }
  }

  /** JSON log lines of a process from byte `offset` on, optionally only those with message `msg`. */
  logLines(name: string, offset = 0, msg?: string): LogLine[] {
    let text: string;
    try {
      const fd = fs.openSync(this.logFile(name), 'r');
      try {
        const size = fs.fstatSync(fd).size;
        const buf = Buffer.alloc(Math.max(0, size - offset));
        fs.readSync(fd, buf, 0, buf.length, offset);
        text = buf.toString('utf8');
      } finally {
        fs.closeSync(fd);
      }
    } catch {
      return [];
    }
    const out: LogLine[] = [];
    for (const line of text.split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        const l = JSON.parse(line) as LogLine;
        if (msg === undefined || l.msg === msg) out.push(l);
      } catch {
        // A partial last line: skip it.
      }
    }
    return out;
  }

  get dataDir(): string {
    return this.cluster.dataDir;
  }

  /** Stops every process, closes NATS, removes the data dir. Idempotent. */
  async stop(): Promise<void> {
    liveClusters.delete(this);
    await this.nc?.close().catch(() => undefined);
    await this.cluster.stop();
    if (!this.keepDir) fs.rmSync(this.cluster.dataDir, { recursive: true, force: true });
  }
}
