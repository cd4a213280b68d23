/**
 * Where the time goes: CPU time per acknowledged write of every process on the write path
 * (gateway, leader, followers, nats-server, the load generator), read from /proc while 64 clients
 * write single rows through the gateway. On a 2-core machine every process competes for the same
 * cores, so CPU per write, not wall time, tells which hop to make cheaper.
 */
import * as fs from 'node:fs';
import { BenchCluster } from './bench-cluster';
import { runWriters } from './load';
import { fmt, markdownTable } from './report';
import { measureMessageFloor, MessageFloor } from './bare-nats';
import { INSERT_SQL, KV_TABLE_DDL, ModeEntry, REQUEST_TIMEOUT_MS, freshKeyBase, Settings } from './sections';

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ: 100 on every Linux build we know). */
const TICKS_PER_S = 100;

/** User + system CPU milliseconds of a process (all its threads), or 0 once it is gone. */
export function processCpuMs(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command (which may hold spaces) start after the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / TICKS_PER_S;
  } catch {
    return 0;
  }
}

export interface CpuRow {
  process: string;
  role: string;
  cpuMs: number;
  usPerWrite: number;
  /** Share of one core over the measured window. */
  coreShare: number;
}

export interface CpuSection {
  mode: string;
  /** Where the writes were sent: the gateway, or the leader's own API (apiPort). */
  entry: ModeEntry;
  clients: number;
  writes: number;
  seconds: number;
  throughputPerS: number;
  rows: CpuRow[];
  totalUsPerWrite: number;
  /** Measured after the run on the same nats-server when asked for (the 1-client run). */
  floor?: MessageFloor;
}

/** One cluster per mode; CPU sampled around a closed-loop run of `clients` writers. */
export async function measureCpu(s: Settings, mode: 'async' | 'semi-sync', clients = 64, withFloor = false, entry: ModeEntry = 'gateway'): Promise<CpuSection> {
  const env: Record<string, string> = { FLOTILLA_MODE: mode };
  if (mode === 'semi-sync') env.FLOTILLA_SYNC_FOLLOWERS = '1';
  const bc = await BenchCluster.start({ replicas: 3, env, ddl: [KV_TABLE_DDL] });
  try {
    const leader = await bc.leader();
    const names = [...bc.cluster.replicaNames, 'gateway', 'nats'];
    const pids = new Map(names.map((n) => [n, bc.cluster.pid(n)] as const));
    for (const [n, pid] of pids) if (!pid) throw new Error(`cpu: ${n} is not running`);
    const cpuOf = () => new Map([...pids].map(([n, pid]) => [n, processCpuMs(pid!)] as const));
    const url = entry === 'gateway' ? bc.gatewayUrl : bc.cluster.apiUrl(leader);
    // Warm up first (JIT, SQLite cache), then measure a run of its own.
    await runWriters({ kind: 'http-writer', url, sql: INSERT_SQL, keyed: true, requestTimeoutMs: REQUEST_TIMEOUT_MS, clients, warmupMs: 0, durationMs: s.warmupMs, maxRequests: 1e9, ratePerS: 0, keyBase: freshKeyBase() });
    const lsn0 = await bc.lsnOf(leader);
    const before = cpuOf();
    const self0 = process.cpuUsage();
    const t0 = performance.now();
    await runWriters({ kind: 'http-writer', url, sql: INSERT_SQL, keyed: true, requestTimeoutMs: REQUEST_TIMEOUT_MS, clients, warmupMs: 0, durationMs: s.durationMs, maxRequests: 1e9, ratePerS: 0, keyBase: freshKeyBase() });
    const seconds = (performance.now() - t0) / 1000;
    const after = cpuOf();
    const self = process.cpuUsage(self0);
    const writes = (await bc.lsnOf(leader)) - lsn0;
    if (writes <= 0) throw new Error('cpu: no write committed during the run');
    const row = (name: string, role: string, cpuMs: number): CpuRow => ({
      process: name, role, cpuMs: Math.round(cpuMs), usPerWrite: +((cpuMs * 1000) / writes).toFixed(1), coreShare: +(cpuMs / 1000 / seconds).toFixed(2),
    });
    const rows = names.map((n) => row(n, n === leader ? 'leader' : n.startsWith('replica') ? 'follower' : n, after.get(n)! - before.get(n)!));
    rows.push(row('bench (load generator)', 'client', (self.user + self.system) / 1000));
    return {
      mode, entry, clients, writes, seconds: +seconds.toFixed(1), throughputPerS: Math.round(writes / seconds), rows,
      totalUsPerWrite: +rows.reduce((a, r) => a + r.usPerWrite, 0).toFixed(1),
      floor: withFloor ? await measureMessageFloor(bc.cluster.natsUrl, pids.get('nats')!) : undefined,
    };
  } finally {
    await bc.stop();
  }
}

export function cpuTable(sections: CpuSection[]): string {
  const out: string[] = [];
  for (const c of sections) {
    out.push(`${c.mode}, ${c.clients} clients${c.entry === 'gateway' ? '' : `, to the leader's API`}: ${fmt(c.writes)} writes in ${c.seconds} s (${fmt(c.throughputPerS)}/s)\n`);
    out.push(
      markdownTable(
        ['process', 'role', 'CPU ms', 'CPU µs per write', 'cores busy'],
        [...c.rows.map((r) => [r.process, r.role, fmt(r.cpuMs), fmt(r.usPerWrite, 1), fmt(r.coreShare, 2)]), ['total', '', '', fmt(c.totalUsPerWrite, 1), fmt(c.rows.reduce((a, r) => a + r.coreShare, 0), 2)]],
      ),
    );
    if (c.floor) {
      out.push(
        `\nFloor of this machine, same nats-server: a bare nats.js subscriber that only echoes each message (no decoding, no SQLite) ` +
          `spends ${c.floor.subscriberUsPerMessage} µs of CPU per message at ${fmt(c.floor.ratePerS)} messages/s, and nats-server ` +
          `${c.floor.natsServerUsPerMessage} µs per message echoed (in and out). At 1 client a follower handles one log message ` +
          'and sends one ack per write: that much of its CPU per write is wake-ups and socket I/O, not Flotilla.',
      );
    }
    out.push('');
  }
  return out.join('\n');
}
