import { callGateway } from '../gateway-client';
import { Io } from '../io';
import { formatTable } from '../table';

/** A node as GET /v1/cluster describes it (fields the CLI shows). */
export interface ClusterNodeView {
  name: string;
  role: string;
  epoch: number;
  lsn: string;
  appliedLsn: string;
  flushedLsn?: string;
  lagMs: number | null;
  problem?: string | null;
  sync: boolean;
  healthy: boolean;
  version?: string;
}

/** GET /v1/cluster */
export interface ClusterView {
  cluster: string;
  epoch: number;
  leader: string | null;
  mode: string;
  logFormat?: string;
  nodes: ClusterNodeView[];
  /** What the active failover monitor says (absent from gateways older than the monitor). */
  failover?: { state: string; reason?: string; monitor: string | null; lastFailover?: { from: string | null; to: string; epoch: number; promotedAt: number } };
}

export interface StatusOptions {
  gateway: string;
  json: boolean;
}

/** Column headers of `flotilla status`. */
export const STATUS_COLUMNS = ['name', 'role', 'epoch', 'applied', 'flushed', 'lagMs', 'sync', 'healthy'];

/** The lines `flotilla status` prints for `view`. */
export function formatStatus(view: ClusterView): string[] {
  const summary =
    `cluster ${view.cluster}  epoch ${view.epoch}  leader ${view.leader ?? '(none)'}  mode ${view.mode}` +
    (view.logFormat ? `  log ${view.logFormat}` : '');
  const rows = [...(view.nodes ?? [])]
    .sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }))
    .map((n) => ({
      name: n.name,
      role: n.role,
      epoch: n.epoch,
      applied: n.appliedLsn,
      // What failover and semi-sync count; gateways before 2026-11-28 do not send it.
      flushed: n.flushedLsn ?? '?',
      lagMs: n.lagMs,
      sync: n.sync ? 'yes' : 'no',
      healthy: n.healthy ? 'yes' : 'NO',
    }));
  const lines = [summary];
  const f = view.failover;
  if (f) {
    let line = `failover ${f.state}${f.monitor ? ` (${f.monitor})` : ''}${f.reason ? `: ${f.reason}` : ''}`;
    if (f.lastFailover) line += `; last: ${f.lastFailover.from ?? '?'} -> ${f.lastFailover.to} at epoch ${f.lastFailover.epoch}, ${new Date(f.lastFailover.promotedAt).toISOString()}`;
    lines.push(line);
  }
  // What a node says keeps it from serving (semi-sync degraded, lease not valid, log not yet checked).
  const problems = [...(view.nodes ?? [])].filter((n) => n.problem).map((n) => `${n.name}: ${n.problem}`);
  return [...lines, '', ...formatTable(STATUS_COLUMNS, rows), ...(problems.length ? ['', ...problems] : [])];
}

/** `flotilla status`: prints the cluster table (or the raw JSON with --json). */
export async function runStatus(options: StatusOptions, io: Io): Promise<number> {
  const view = await callGateway<ClusterView>(options.gateway, 'GET', '/v1/cluster');
  if (options.json) io.out(JSON.stringify(view, null, 2));
  else for (const line of formatStatus(view)) io.out(line);
  return 0;
}
