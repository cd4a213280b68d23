import { callGateway } from '../gateway-client';
import { Io } from '../io';
import { formatTable } from '../table';

/** One discarded transaction as GET /v1/admin/discarded lists it (fields the CLI shows). */
export interface DiscardedView {
  node: string;
  lsn: string;
  epoch: number;
  ts: number;
  discardedAt: number;
  changes: { op: string; t?: string }[];
}

/** GET /v1/admin/discarded */
export interface DiscardedListView {
  discarded: DiscardedView[];
  unavailable: { node: string; reason: string }[];
}

export interface DiscardedOptions {
  gateway: string;
  json: boolean;
}

/** Column headers of `flotilla discarded`. */
export const DISCARDED_COLUMNS = ['node', 'lsn', 'epoch', 'committed', 'discarded', 'changes'];

/** `ins items ×2, del t` — what a transaction changed, per operation and table, in first-seen order. */
export function summarizeChanges(changes: DiscardedView['changes']): string {
  const counts = new Map<string, number>();
  for (const c of changes ?? []) {
    const key = c.op === 'ddl' ? 'ddl' : `${c.op} ${c.t ?? '?'}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].map(([k, n]) => (n > 1 ? `${k} ×${n}` : k)).join(', ') || '(none)';
}

function iso(ms: number): string {
  return Number.isFinite(ms) ? new Date(ms).toISOString() : String(ms);
}

/** The lines `flotilla discarded` prints on stdout, and the warnings for replicas that did not answer. */
export function formatDiscarded(list: DiscardedListView): { out: string[]; warnings: string[] } {
  const warnings = (list.unavailable ?? []).map((u) => `warning: no list from ${u.node} (${u.reason}): its discarded transactions are not shown`);
  if ((list.discarded ?? []).length === 0) return { out: ['no discarded transactions'], warnings };
  const rows = list.discarded.map((t) => ({
    node: t.node,
    lsn: t.lsn,
    epoch: t.epoch,
    committed: iso(t.ts),
    discarded: iso(t.discardedAt),
    changes: summarizeChanges(t.changes),
  }));
  return { out: formatTable(DISCARDED_COLUMNS, rows), warnings };
}

/** `flotilla discarded`: the transactions replicas undid when they rewound after a failover. */
export async function runDiscarded(options: DiscardedOptions, io: Io): Promise<number> {
  const list = await callGateway<DiscardedListView>(options.gateway, 'GET', '/v1/admin/discarded');
  if (options.json) {
    io.out(JSON.stringify(list, null, 2));
    return 0;
  }
  const { out, warnings } = formatDiscarded(list);
  for (const line of out) io.out(line);
  for (const w of warnings) io.err(w);
  return 0;
}
