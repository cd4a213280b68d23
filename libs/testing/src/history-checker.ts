/**
 * A checker over a recorded client history and the final content of every replica, for the fault
 * tier. Pure: the test gathers the inputs (acknowledged writes from its load, rows and log read from
 * each replica's SQLite file after convergence, leaders seen in heartbeats, the quarantine from
 * GET /v1/admin/discarded) and {@link checkHistory} says what is wrong, in words.
 *
 * What it proves (each violation names the write, node, epoch or LSN at fault):
 * - nothing acknowledged is missing: every acknowledged key is on every replica with its value
 *   (an acknowledged write of an older epoch may instead be in the quarantine, only when
 *   `allowQuarantinedLoss` says the mode permits it — async);
 * - nothing is applied twice: no key (one client request, one idempotency key) has two rows on any
 *   replica, no two acknowledgements of one key name different positions, no idempotency key
 *   appears in two log entries;
 * - no two leaders accepted writes in one epoch: heartbeats never name two leaders for an epoch; two
 *   different writes are never acknowledged at the same (epoch, LSN); every acknowledged write sits
 *   in the final log at its LSN with its epoch; replicas agree on every log entry and epoch start they
 *   share; no write is acknowledged in an epoch after a newer epoch had already acknowledged one
 *   before the write was first sent (a deposed leader accepting writes).
 */

/** One acknowledged client write: a row (key, value) of the history table, and what /v1/execute answered. */
export interface AckedWrite {
  key: string;
  value: string;
  /** Idempotency key the client sent (it is replicated in the log entry's payload). */
  idem?: string;
  lsn: number;
  epoch: number;
  /** When the client first sent this request (any retry comes later), ms on the test's clock. */
  sentAtMs: number;
  /** When the acknowledgement arrived, ms on the same clock. */
  ackedAtMs: number;
}

/** A write sent but never acknowledged: it may be applied once, or not at all, never twice. */
export interface UnackedWrite {
  key: string;
  value: string;
}

/** One entry of a replica's `_flotilla_log`. */
export interface LogEntryInfo {
  lsn: number;
  epoch: number;
  crc: number;
  /** Idempotency key in the entry's payload, if any. */
  idem?: string;
}

/** What one replica holds once the cluster converged. */
export interface ReplicaContent {
  node: string;
  /** Every row of the history table, duplicates kept. */
  rows: { key: string; value: string }[];
  /** `_flotilla_log` (what retention left of it). */
  log: LogEntryInfo[];
  /** `_flotilla_epochs`. */
  epochs: { epoch: number; startLsn: number }[];
}

/** A node seen leading an epoch (a heartbeat with role leader, or /v1/cluster). */
export interface LeaderObservation {
  epoch: number;
  leader: string;
  atMs: number;
}

/** A transaction a replica discarded when it rewound, reduced to the history keys it inserted. */
export interface QuarantinedWrite {
  node: string;
  lsn: number;
  epoch: number;
  keys: string[];
}

export interface HistoryInput {
  acked: AckedWrite[];
  /** Writes sent and never acknowledged; with it given, a row whose key was never sent is a violation. */
  unacked?: UnackedWrite[];
  replicas: ReplicaContent[];
  leaders?: LeaderObservation[];
  quarantine?: QuarantinedWrite[];
  /**
   * Async replication: an acknowledged write of an epoch older than the newest acknowledged one may
   * be gone from every replica if it is in the quarantine at its LSN and epoch (rewound, not lost
   * silently). Off: every acknowledged write must be everywhere.
   */
  allowQuarantinedLoss?: boolean;
}

export interface HistoryReport {
  ok: boolean;
  violations: string[];
  /** Acknowledged writes rewound into the quarantine (only with allowQuarantinedLoss). */
  quarantinedAcks: AckedWrite[];
  stats: {
    acked: number;
    unacked: number;
    /** Unacknowledged writes that were applied (once) nevertheless. */
    unackedApplied: number;
    replicas: number;
    /** Acknowledged writes per epoch. */
    ackedByEpoch: Record<number, number>;
    /** Leader(s) seen per epoch. */
    leadersByEpoch: Record<number, string[]>;
  };
}

/** At most this many violations of one kind are listed (the count of the rest is given). */
const MAX_PER_KIND = 10;

class Violations {
  private readonly byKind = new Map<string, string[]>();
  add(kind: string, message: string): void {
    const list = this.byKind.get(kind) ?? [];
    list.push(message);
    this.byKind.set(kind, list);
  }
  list(): string[] {
    const out: string[] = [];
    for (const [kind, messages] of this.byKind) {
      out.push(...messages.slice(0, MAX_PER_KIND).map((m) => `${kind}: ${m}`));
      if (messages.length > MAX_PER_KIND) out.push(`${kind}: … and ${messages.length - MAX_PER_KIND} more`);
    }
    return out;
  }
}

/** Checks a history against the replicas' final content; see the module comment for what is proved. */
export function checkHistory(input: HistoryInput): HistoryReport {
  const v = new Violations();
  const acked = input.acked;
  const unacked = input.unacked ?? [];

  // ---- the acknowledgements among themselves --------------------------------------------------
  const ackByKey = new Map<string, AckedWrite>();
  for (const a of acked) {
    const prev = ackByKey.get(a.key);
    if (prev && (prev.lsn !== a.lsn || prev.epoch !== a.epoch || prev.value !== a.value)) {
      v.add('applied twice', `key ${a.key} acknowledged at (epoch ${prev.epoch}, lsn ${prev.lsn}) and at (epoch ${a.epoch}, lsn ${a.lsn})`);
    }
    if (!prev) ackByKey.set(a.key, a);
  }
  const ackAt = new Map<string, AckedWrite>();
  for (const a of ackByKey.values()) {
    const at = `${a.epoch}/${a.lsn}`;
    const other = ackAt.get(at);
    if (other && other.key !== a.key) {
      v.add('two leaders in one epoch', `keys ${other.key} and ${a.key} both acknowledged at epoch ${a.epoch}, lsn ${a.lsn}`);
    } else ackAt.set(at, a);
  }
  // A deposed leader must not accept a write first sent after a newer epoch acknowledged one.
  const firstAckOfEpoch = new Map<number, AckedWrite>();
  for (const a of ackByKey.values()) {
    const f = firstAckOfEpoch.get(a.epoch);
    if (!f || a.ackedAtMs < f.ackedAtMs) firstAckOfEpoch.set(a.epoch, a);
  }
  const epochsAsc = [...firstAckOfEpoch.keys()].sort((x, y) => x - y);
  for (const a of ackByKey.values()) {
    for (const e of epochsAsc) {
      if (e <= a.epoch) continue;
      const f = firstAckOfEpoch.get(e)!;
      if (a.sentAtMs > f.ackedAtMs) {
        v.add(
          'write accepted by a deposed leader',
          `key ${a.key} acknowledged in epoch ${a.epoch} (lsn ${a.lsn}) though first sent ${Math.round(a.sentAtMs - f.ackedAtMs)} ms after epoch ${e} acknowledged key ${f.key}`,
        );
        break;
      }
    }
  }

  // ---- leaders seen ---------------------------------------------------------------------------
  const leadersByEpoch: Record<number, string[]> = {};
  for (const o of input.leaders ?? []) {
    const list = (leadersByEpoch[o.epoch] ??= []);
    if (!list.includes(o.leader)) list.push(o.leader);
  }
  for (const [epoch, leaders] of Object.entries(leadersByEpoch)) {
    if (leaders.length > 1) v.add('two leaders in one epoch', `epoch ${epoch} led by ${leaders.join(' and ')} (heartbeats)`);
  }

  // ---- quarantine -----------------------------------------------------------------------------
  const quarantinedAt = new Map<string, QuarantinedWrite[]>();
  for (const q of input.quarantine ?? []) {
    for (const key of q.keys) quarantinedAt.set(key, [...(quarantinedAt.get(key) ?? []), q]);
  }
  const newestAckedEpoch = epochsAsc.length ? epochsAsc[epochsAsc.length - 1] : 0;

  // ---- every replica's rows -------------------------------------------------------------------
  const sentKeys = new Set<string>([...ackByKey.keys(), ...unacked.map((u) => u.key)]);
  const quarantinedAcks = new Map<string, AckedWrite>();
  const unackedApplied = new Set<string>();
  const rowsByNode = new Map<string, Map<string, string[]>>();
  for (const r of input.replicas) {
    const byKey = new Map<string, string[]>();
    for (const row of r.rows) byKey.set(row.key, [...(byKey.get(row.key) ?? []), row.value]);
    rowsByNode.set(r.node, byKey);
    for (const [key, values] of byKey) {
      if (values.length > 1) v.add('applied twice', `key ${key} has ${values.length} rows on ${r.node}`);
      if (input.unacked && !sentKeys.has(key)) v.add('phantom write', `key ${key} on ${r.node} was never sent`);
    }
  }
  for (const a of ackByKey.values()) {
    const missingOn: string[] = [];
    for (const r of input.replicas) {
      const values = rowsByNode.get(r.node)!.get(a.key);
      if (!values) missingOn.push(r.node);
      else if (!values.includes(a.value)) v.add('wrong value', `key ${a.key} on ${r.node} is ${JSON.stringify(values[0])}, acknowledged ${JSON.stringify(a.value)}`);
    }
    if (missingOn.length === 0) continue;
    const inQuarantine = (quarantinedAt.get(a.key) ?? []).some((q) => q.lsn === a.lsn && q.epoch === a.epoch);
    if (missingOn.length === input.replicas.length && inQuarantine && input.allowQuarantinedLoss && a.epoch < newestAckedEpoch) {
      quarantinedAcks.set(a.key, a);
      continue;
    }
    v.add(
      'acknowledged write missing',
      `key ${a.key} (epoch ${a.epoch}, lsn ${a.lsn}) missing on ${missingOn.join(', ')}${inQuarantine ? ' (it is in the quarantine)' : ''}`,
    );
  }
  for (const u of unacked) {
    const present = input.replicas.filter((r) => rowsByNode.get(r.node)!.has(u.key)).map((r) => r.node);
    if (present.length > 0) unackedApplied.add(u.key);
    if (present.length > 0 && present.length < input.replicas.length) {
      v.add('replicas differ', `unacknowledged key ${u.key} on ${present.join(', ')} only`);
    }
  }
  // Every replica holds the same set of keys.
  if (input.replicas.length > 1) {
    const first = input.replicas[0];
    const firstKeys = rowsByNode.get(first.node)!;
    for (const r of input.replicas.slice(1)) {
      const keys = rowsByNode.get(r.node)!;
      const onlyFirst = [...firstKeys.keys()].filter((k) => !keys.has(k) && !ackByKey.has(k) && !unackedApplied.has(k));
      const onlyOther = [...keys.keys()].filter((k) => !firstKeys.has(k) && !ackByKey.has(k) && !unackedApplied.has(k));
      for (const k of onlyFirst) v.add('replicas differ', `key ${k} on ${first.node}, not on ${r.node}`);
      for (const k of onlyOther) v.add('replicas differ', `key ${k} on ${r.node}, not on ${first.node}`);
    }
  }

  // ---- logs and epoch histories -----------------------------------------------------------------
  const logByNode = new Map<string, Map<number, LogEntryInfo>>();
  for (const r of input.replicas) {
    const byLsn = new Map<number, LogEntryInfo>();
    const idemSeen = new Map<string, number>();
    let prev: LogEntryInfo | undefined;
    for (const e of [...r.log].sort((x, y) => x.lsn - y.lsn)) {
      byLsn.set(e.lsn, e);
      if (prev && e.epoch < prev.epoch) v.add('log out of order', `${r.node}: lsn ${e.lsn} has epoch ${e.epoch} after lsn ${prev.lsn} of epoch ${prev.epoch}`);
      if (e.idem !== undefined) {
        const at = idemSeen.get(e.idem);
        if (at !== undefined) v.add('applied twice', `idempotency key ${e.idem} in log entries ${at} and ${e.lsn} on ${r.node}`);
        else idemSeen.set(e.idem, e.lsn);
      }
      prev = e;
    }
    logByNode.set(r.node, byLsn);
    const epochs = [...r.epochs].sort((x, y) => x.epoch - y.epoch);
    for (let i = 1; i < epochs.length; i++) {
      if (epochs[i].startLsn < epochs[i - 1].startLsn) {
        v.add('epoch history', `${r.node}: epoch ${epochs[i].epoch} starts at ${epochs[i].startLsn}, before epoch ${epochs[i - 1].epoch} (${epochs[i - 1].startLsn})`);
      }
    }
    for (const e of byLsn.values()) {
      const i = epochs.findIndex((x) => x.epoch === e.epoch);
      if (i < 0) continue;
      const next = epochs.slice(i + 1).find((x) => x.startLsn > epochs[i].startLsn);
      if (e.lsn < epochs[i].startLsn || (next && e.lsn >= next.startLsn)) {
        v.add('epoch history', `${r.node}: lsn ${e.lsn} of epoch ${e.epoch} outside the epoch's range (starts ${epochs[i].startLsn}${next ? `, next epoch ${next.epoch} at ${next.startLsn}` : ''})`);
      }
    }
  }
  for (let i = 0; i < input.replicas.length; i++) {
    for (let j = i + 1; j < input.replicas.length; j++) {
      const a = input.replicas[i];
      const b = input.replicas[j];
      const la = logByNode.get(a.node)!;
      const lb = logByNode.get(b.node)!;
      for (const [lsn, ea] of la) {
        const eb = lb.get(lsn);
        if (eb && (eb.epoch !== ea.epoch || eb.crc !== ea.crc)) {
          v.add('replicas differ', `lsn ${lsn}: ${a.node} has (epoch ${ea.epoch}, crc ${ea.crc}), ${b.node} has (epoch ${eb.epoch}, crc ${eb.crc})`);
        }
      }
      const starts = new Map(b.epochs.map((x) => [x.epoch, x.startLsn]));
      for (const x of a.epochs) {
        const s = starts.get(x.epoch);
        if (s !== undefined && s !== x.startLsn) v.add('replicas differ', `epoch ${x.epoch} starts at ${x.startLsn} on ${a.node}, at ${s} on ${b.node}`);
      }
    }
  }
  for (const a of ackByKey.values()) {
    if (quarantinedAcks.has(a.key)) continue;
    for (const r of input.replicas) {
      const e = logByNode.get(r.node)!.get(a.lsn);
      if (!e) continue; // dropped by retention
      if (e.epoch !== a.epoch) v.add('acknowledged write overwritten', `key ${a.key} acknowledged at (epoch ${a.epoch}, lsn ${a.lsn}); ${r.node} has epoch ${e.epoch} there`);
      else if (a.idem !== undefined && e.idem !== a.idem) {
        v.add('acknowledged write overwritten', `key ${a.key} acknowledged at lsn ${a.lsn} (idempotency key ${a.idem}); ${r.node}'s entry there has ${e.idem ?? 'none'}`);
      }
    }
  }

  const ackedByEpoch: Record<number, number> = {};
  for (const a of ackByKey.values()) ackedByEpoch[a.epoch] = (ackedByEpoch[a.epoch] ?? 0) + 1;
  const violations = v.list();
  return {
    ok: violations.length === 0,
    violations,
    quarantinedAcks: [...quarantinedAcks.values()],
    stats: {
      acked: ackByKey.size,
      unacked: unacked.length,
      unackedApplied: unackedApplied.size,
      replicas: input.replicas.length,
      ackedByEpoch,
      leadersByEpoch,
    },
  };
}

/** One line per fact of a report, for a test's output. */
export function formatHistoryReport(report: HistoryReport): string {
  const s = report.stats;
  const epochs = Object.entries(s.ackedByEpoch)
    .map(([e, n]) => `${e}:${n}${s.leadersByEpoch[Number(e)] ? `@${s.leadersByEpoch[Number(e)].join('+')}` : ''}`)
    .join(' ');
  return [
    `history: ${s.acked} acknowledged, ${s.unacked} unacknowledged (${s.unackedApplied} applied anyway), ${s.replicas} replicas`,
    `acknowledged per epoch (leader): ${epochs}`,
    ...(report.quarantinedAcks.length ? [`acknowledged but rewound into the quarantine: ${report.quarantinedAcks.length}`] : []),
    report.ok ? 'checker: ok' : `checker: ${report.violations.length} violation(s):\n  ${report.violations.join('\n  ')}`,
  ].join('\n');
}
