/**
 * Support of the fault tier: a cluster with per-replica NATS proxies, a keyed client load that
 * records the history the checker needs (every acknowledged write with its LSN and epoch, every
 * write never acknowledged), a heartbeat watch that records which node led which epoch, and
 * `verifyHistory`: wait for convergence, read every replica's SQLite file, run the checker.
 */
import Database from 'better-sqlite3';
import type { NatsConnection, Subscription } from 'nats';
import { LocalCluster } from '@flotilla/local-cluster';
import { decodeHeartbeat, DiscardedTransaction, Heartbeat, subjectsFor } from '@flotilla/protocol';
import {
  AckedWrite,
  checkHistory,
  formatHistoryReport,
  HistoryReport,
  httpJson,
  LeaderObservation,
  QuarantinedWrite,
  ReplicaContent,
  startLocalCluster,
  startNatsServer,
  TcpProxy,
  UnackedWrite,
  waitFor,
} from '@flotilla/testing';
import { natsClient, statusOf } from '../integration/support';

/** The history table every fault test writes to: no unique key, so a write applied twice shows as two rows. */
export const HISTORY_TABLE = 'h';
export const MONITORS = ['monitor-0', 'monitor-1'];

/** Milliseconds on one clock for the whole test process (comparable across loads and watches). */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

export interface ClusterView {
  leader: string | null;
  epoch: number;
  mode: string;
  nodes: { name: string; role: string; epoch: number; lsn: string; healthy: boolean; sync: boolean; lagMs: number }[];
  failover: {
    state: string;
    reason?: string;
    monitor: string | null;
    lastFailover?: { from: string | null; to: string; epoch: number };
  };
}

export async function clusterView(cluster: LocalCluster): Promise<ClusterView> {
  const r = await httpJson('GET', `${cluster.gatewayUrl}/v1/cluster`);
  if (r.status !== 200) throw new Error(`GET /v1/cluster: ${r.status}`);
  return r.body as ClusterView;
}

/** Records every leader heartbeat's (epoch, node) and the newest heartbeat of each node. */
export class HeartbeatWatch {
  readonly leaders: LeaderObservation[] = [];
  readonly latest = new Map<string, Heartbeat & { seenAtMs: number }>();
  private readonly seen = new Set<string>();
  private sub?: Subscription;

  start(nc: NatsConnection, cluster = 'flotilla'): this {
    this.sub = nc.subscribe(subjectsFor(cluster).heartbeatAll, {
      callback: (_err, m) => {
        let hb: Heartbeat;
        try {
          hb = decodeHeartbeat(m.data);
        } catch {
          return;
        }
        const at = nowMs();
        this.latest.set(hb.node, { ...hb, seenAtMs: at });
        if (hb.role === 'leader') {
          const k = `${hb.epoch}/${hb.node}`;
          if (!this.seen.has(k)) {
            this.seen.add(k);
            this.leaders.push({ epoch: hb.epoch, leader: hb.node, atMs: at });
          }
        }
      },
    });
    return this;
  }

  /** The newest heartbeat of `node` if it is fresher than `maxAgeMs`. */
  fresh(node: string, maxAgeMs = 1000): (Heartbeat & { seenAtMs: number }) | undefined {
    const hb = this.latest.get(node);
    return hb && nowMs() - hb.seenAtMs <= maxAgeMs ? hb : undefined;
  }

  stop(): void {
    this.sub?.unsubscribe();
  }
}

export interface FaultCluster {
  cluster: LocalCluster;
  nc: NatsConnection;
  watch: HeartbeatWatch;
  /** Replica name → its TcpProxy to nats-server (only with `proxies`). */
  proxies: Map<string, TcpProxy>;
}

/**
 * 3 replicas, 2 monitors and the gateway under the supervisor, replication `mode`; with `proxies`
 * every replica reaches NATS through its own TcpProxy (monitors and gateway do not), so one replica
 * can be cut off alone.
 */
export async function startFaultCluster(opts: { mode: 'async' | 'semi-sync' | 'sync'; proxies?: boolean; env?: Record<string, string>; replicaEnv?: Record<string, string> }): Promise<FaultCluster> {
  const proxies = new Map<string, TcpProxy>();
  let natsUrl: string | undefined;
  if (opts.proxies) {
    const nats = await startNatsServer({ jetstream: true });
    natsUrl = nats.url;
    for (const name of ['replica-0', 'replica-1', 'replica-2']) proxies.set(name, await TcpProxy.start(nats.port));
  }
  const { cluster } = await startLocalCluster({
    replicas: 3,
    monitor: true,
    ...(natsUrl ? { natsUrl, natsUrlFor: (name: string) => proxies.get(name)?.natsUrl } : {}),
    env: opts.env,
    replicaEnv: { FLOTILLA_MODE: opts.mode, ...opts.replicaEnv },
  });
  await cluster.waitUntilReady();
  const nc = await natsClient(cluster.natsUrl);
  const watch = new HeartbeatWatch().start(nc, cluster.clusterName);
  return { cluster, nc, watch, proxies };
}

/** The leader once the gateway knows it, every replica is healthy and the active monitor reports ok. */
export async function steadyLeader(cluster: LocalCluster, timeoutMs = 60_000): Promise<{ leader: string; epoch: number }> {
  return waitFor(
    async () => {
      const v = await clusterView(cluster);
      const healthy = v.nodes.filter((n) => n.healthy).length === cluster.replicaNames.length;
      return v.leader && v.failover.state === 'ok' && healthy ? { leader: v.leader, epoch: v.epoch } : null;
    },
    { what: 'a leader, every replica healthy and an active monitor reporting ok', timeoutMs },
  );
}

/** Name of the monitor that reports itself active on /healthz (exactly one must). */
export async function activeMonitor(cluster: LocalCluster): Promise<string> {
  return waitFor(
    async () => {
      const states = await Promise.all(MONITORS.map(async (m) => ({ m, active: (await httpJson('GET', `${cluster.httpUrl(m)}/healthz`)).body?.active })));
      const active = states.filter((s) => s.active === true);
      return active.length === 1 && states.every((s) => typeof s.active === 'boolean') ? active[0].m : null;
    },
    { what: 'exactly one active monitor', timeoutMs: 30_000 },
  );
}

/** kill -9, and the supervisor does not start it again until startProcess (a restarted old leader may re-take its lease before it runs out). */
export async function killAndKeepDown(cluster: LocalCluster, name: string): Promise<void> {
  cluster.signal(name, 'SIGKILL');
  await cluster.stopProcess(name);
}

export { logLines } from '@flotilla/testing';

export async function createHistoryTable(cluster: LocalCluster): Promise<void> {
  const r = await httpJson('POST', `${cluster.gatewayUrl}/v1/execute`, {
    statements: [{ sql: `CREATE TABLE ${HISTORY_TABLE}(id INTEGER PRIMARY KEY, k TEXT NOT NULL, v TEXT NOT NULL)` }],
  });
  if (r.status !== 200) throw new Error(`CREATE TABLE: ${r.status} ${JSON.stringify(r.body)}`);
}

export interface HistoryLoad {
  readonly acked: AckedWrite[];
  readonly unacked: UnackedWrite[];
  readonly failures: { atMs: number; status: number; code?: string }[];
  /** Acknowledged writes of an epoch above `epoch`. */
  ackedAbove(epoch: number): AckedWrite[];
  /** The first acknowledgement (by arrival) in an epoch above `epoch`. */
  firstAbove(epoch: number): AckedWrite | undefined;
  stop(): Promise<void>;
}

/**
 * `clients` concurrent clients, each inserting one row (key, value) per request with an
 * idempotency key, into {@link HISTORY_TABLE}. A request that fails is retried with the same key
 * (as a real client would) until acknowledged or the load stops; what was never acknowledged is
 * recorded in `unacked` (applied at most once, maybe not at all).
 */
const runningLoads = new Set<HistoryLoad>();

/** Stops every load still running (a test that failed half-way leaves its load behind): call it in afterEach. */
export async function stopLoads(): Promise<void> {
  await Promise.all([...runningLoads].map((l) => l.stop()));
}

export function startHistoryLoad(gatewayUrl: string, opts: { clients: number; prefix?: string }): HistoryLoad {
  const prefix = opts.prefix ?? 'w';
  let next = 0;
  let stopped = false;
  const acked: AckedWrite[] = [];
  const unacked: UnackedWrite[] = [];
  const failures: { atMs: number; status: number; code?: string }[] = [];
  const worker = async () => {
    while (!stopped) {
      const key = `${prefix}-${next++}`;
      const value = `value-${key}`;
      const idem = `${HISTORY_TABLE}-${key}`;
      const sentAtMs = nowMs();
      let done = false;
      while (!done && !stopped) {
        const r = await httpJson('POST', `${gatewayUrl}/v1/execute`, {
          statements: [{ sql: `INSERT INTO ${HISTORY_TABLE}(k, v) VALUES (?, ?)`, params: [key, value] }],
          idempotencyKey: idem,
        }).catch((e) => ({ status: 0, body: { error: { code: String(e) } } }) as { status: number; body: any });
        if (r.status === 200) {
          acked.push({ key, value, idem, lsn: Number(r.body.lsn), epoch: Number(r.body.epoch), sentAtMs, ackedAtMs: nowMs() });
          done = true;
        } else {
          failures.push({ atMs: nowMs(), status: r.status, code: r.body?.error?.code });
          await new Promise((res) => setTimeout(res, 20));
        }
      }
      if (!done) unacked.push({ key, value });
    }
  };
  const all = Promise.all(Array.from({ length: opts.clients }, worker));
  const load: HistoryLoad = {
    acked,
    unacked,
    failures,
    ackedAbove: (epoch) => acked.filter((a) => a.epoch > epoch),
    firstAbove: (epoch) => acked.filter((a) => a.epoch > epoch).sort((x, y) => x.ackedAtMs - y.ackedAtMs)[0],
    async stop() {
      stopped = true;
      runningLoads.delete(load);
      await all;
    },
  };
  runningLoads.add(load);
  return load;
}

/**
 * `node` follows the leader of an epoch ≥ `epoch` and has caught up: its log reached the LSN the
 * leader had when `node` was first seen following it (lagMs alone is not enough: a follower that
 * has not received anything yet reports no lag).
 */
export async function rejoined(f: FaultCluster, node: string, epoch: number, timeoutMs = 30_000): Promise<void> {
  let target: number | undefined;
  await waitFor(
    () => {
      const hb = f.watch.fresh(node);
      if (!hb || hb.role !== 'follower' || hb.epoch < epoch || !hb.leader || hb.leader === node) return null;
      if (target === undefined) {
        const leader = f.watch.fresh(hb.leader);
        if (!leader || leader.role !== 'leader' || leader.epoch !== hb.epoch) return null;
        target = Number(leader.lsn);
      }
      return Number(hb.lsn) >= target ? hb : null;
    },
    { what: `${node} following again (epoch ≥ ${epoch}) and caught up`, timeoutMs },
  );
}

/** Both followers of `leader` (epoch `epoch`) within `maxBehind` LSNs of it, by their heartbeats. */
export function followersCaughtUp(f: FaultCluster, leader: string, epoch: number, maxBehind = 50): boolean {
  const l = f.watch.fresh(leader);
  if (!l || l.role !== 'leader' || l.epoch !== epoch) return false;
  return f.cluster.replicaNames
    .filter((n) => n !== leader)
    .every((n) => {
      const hb = f.watch.fresh(n);
      return hb && hb.role === 'follower' && hb.epoch === epoch && hb.leader === leader && Number(hb.lsn) >= Number(l.lsn) - maxBehind;
    });
}

/** Waits for the first acknowledgement in an epoch above `epoch`. */
export async function firstAckAbove(load: HistoryLoad, epoch: number, timeoutMs: number): Promise<AckedWrite> {
  return waitFor(() => load.firstAbove(epoch), { what: `a write acknowledged in an epoch above ${epoch}`, timeoutMs, intervalMs: 10 });
}

/** Reads what one replica holds: the history table, its log and its epoch history (read-only, WAL-safe). */
export function readReplica(dbFile: string, node: string): ReplicaContent {
  const db = new Database(dbFile, { readonly: true, fileMustExist: true });
  try {
    return db.transaction(() => {
      const hasTable = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(HISTORY_TABLE);
      const rows = hasTable ? (db.prepare(`SELECT k AS key, v AS value FROM ${HISTORY_TABLE}`).all() as { key: string; value: string }[]) : [];
      const log = (db.prepare('SELECT lsn, epoch, crc, payload FROM _flotilla_log').all() as { lsn: number; epoch: number; crc: number; payload: string }[]).map((e) => {
        let idem: string | undefined;
        try {
          idem = (JSON.parse(e.payload) as { idem?: string }).idem;
        } catch {
          idem = undefined;
        }
        return { lsn: Number(e.lsn), epoch: Number(e.epoch), crc: Number(e.crc), idem };
      });
      const epochs = (db.prepare('SELECT epoch, start_lsn AS startLsn FROM _flotilla_epochs').all() as { epoch: number; startLsn: number }[]).map((x) => ({
        epoch: Number(x.epoch),
        startLsn: Number(x.startLsn),
      }));
      return { node, rows, log, epochs };
    })();
  } finally {
    db.close();
  }
}

/** GET /v1/admin/discarded, and the history keys each discarded transaction inserted. */
export async function quarantine(cluster: LocalCluster): Promise<{ raw: DiscardedTransaction[]; unavailable: unknown[]; writes: QuarantinedWrite[] }> {
  const r = await httpJson('GET', `${cluster.gatewayUrl}/v1/admin/discarded`);
  if (r.status !== 200) throw new Error(`GET /v1/admin/discarded: ${r.status} ${JSON.stringify(r.body)}`);
  const raw = r.body.discarded as DiscardedTransaction[];
  const writes = raw.map((t) => {
    const cols = t.cols?.[HISTORY_TABLE] ?? [];
    const k = cols.indexOf('k');
    const keys = (t.changes ?? []).flatMap((c) => (c.op === 'ins' && c.t === HISTORY_TABLE && k >= 0 ? [String(c.row[k])] : []));
    return { node: t.node, lsn: Number(t.lsn), epoch: t.epoch, keys };
  });
  return { raw, unavailable: r.body.unavailable ?? [], writes };
}

/** Every replica running, one leader, the others following it at the same LSN (no load running). */
export async function waitConverged(fc: FaultCluster, timeoutMs = 60_000): Promise<{ leader: string; lsn: string; epoch: number }> {
  const { cluster, nc } = fc;
  return waitFor(
    async () => {
      const statuses = await Promise.all(cluster.replicaNames.map((n) => statusOf(nc, n, cluster.clusterName)));
      const hbs = statuses.map((s) => s.heartbeat);
      const leaders = hbs.filter((h) => h.role === 'leader');
      if (leaders.length !== 1) return null;
      const [leader] = leaders;
      const ok = hbs.every((h) => h.lsn === leader.lsn && h.appliedLsn === leader.lsn && h.epoch === leader.epoch && (h === leader || (h.role === 'follower' && h.leader === leader.node)));
      return ok ? { leader: leader.node, lsn: leader.lsn, epoch: leader.epoch } : null;
    },
    { what: 'every replica following one leader at the same LSN', timeoutMs, intervalMs: 200 },
  );
}

/**
 * Stops nothing: waits for convergence, reads every replica's file and the quarantine, runs the
 * checker over `load`'s history and the heartbeat watch, prints the report and returns it.
 */
export async function verifyHistory(fc: FaultCluster, load: HistoryLoad, opts: { allowQuarantinedLoss?: boolean; label: string }): Promise<HistoryReport & { quarantine: Awaited<ReturnType<typeof quarantine>> }> {
  const converged = await waitConverged(fc);
  const replicas = fc.cluster.replicaNames.map((n) => readReplica(fc.cluster.replicaDbFile(n), n));
  const q = await quarantine(fc.cluster);
  const report = checkHistory({
    acked: load.acked,
    unacked: load.unacked,
    replicas,
    leaders: fc.watch.leaders,
    quarantine: q.writes,
    allowQuarantinedLoss: opts.allowQuarantinedLoss,
  });
  // eslint-disable-next-line no-console
  console.log(
    `[${opts.label}] converged on ${converged.leader} at lsn ${converged.lsn} (epoch ${converged.epoch}); ` +
      `${load.failures.length} failed requests retried; quarantine: ${q.raw.length} transaction(s)\n${formatHistoryReport(report)}`,
  );
  return { ...report, quarantine: q };
}

/** p-th percentile (nearest rank) of `values`. */
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

export { natsClient };
