/**
 * What the failover monitors say, for GET /v1/cluster (`failover`): the latest MonitorStatus of
 * each monitor (subjects.monitorStatus), and from them the status of the *active* one. A monitor
 * not heard from for `staleAfterMs` is ignored (it died; the standby takes over within a lease TTL).
 *
 * Plain TypeScript: statuses are decoded at the boundary ({@link decodeMonitorStatus}) and fed in;
 * time comes from the injected Clock (monotonic).
 */
import type { Clock } from '@flotilla/logging';
import { decodeEnvelope, MonitorStatus, ProtocolError } from '@flotilla/protocol';

/** A monitor status older than this is ignored: 20 of its 100 ms publications missed. */
export const MONITOR_STATUS_STALE_MS = 2000;

/** `failover` in GET /v1/cluster. */
export interface FailoverView {
  /** The active monitor's state; `unknown` when no active monitor is heard from. */
  state: MonitorStatus['state'] | 'unknown';
  /** Why (no eligible candidate: ..., waiting for a lease to run out, ...). */
  reason?: string;
  /** Name of the active monitor, null when none is heard from. */
  monitor: string | null;
  /** The most recent failover any monitor reported. */
  lastFailover?: NonNullable<MonitorStatus['lastFailover']>;
}

const STATES: readonly string[] = ['ok', 'failing-over', 'no-candidate', 'standby'];

/** Validates a MonitorStatus at the boundary; throws ProtocolError naming the problem. */
export function decodeMonitorStatus(data: Uint8Array): MonitorStatus {
  const m = decodeEnvelope(data);
  if (m.type !== 'monitor-status') throw new ProtocolError(`expected monitor-status, got ${m.type}`);
  if (typeof m.monitor !== 'string' || m.monitor === '') throw new ProtocolError('bad monitor');
  if (typeof m.active !== 'boolean') throw new ProtocolError('bad active');
  if (typeof m.state !== 'string' || !STATES.includes(m.state)) throw new ProtocolError(`bad state ${JSON.stringify(m.state)}`);
  if (m.reason !== undefined && typeof m.reason !== 'string') throw new ProtocolError('bad reason');
  if (typeof m.epoch !== 'number' || typeof m.ts !== 'number') throw new ProtocolError('bad epoch or ts');
  const f = m.lastFailover as Record<string, unknown> | undefined;
  if (f !== undefined && (typeof f !== 'object' || f === null || typeof f.to !== 'string' || typeof f.epoch !== 'number' || typeof f.promotedAt !== 'number')) {
    throw new ProtocolError('bad lastFailover');
  }
  return m as unknown as MonitorStatus;
}

export class MonitorBoard {
  private readonly latest = new Map<string, { status: MonitorStatus; seenAt: number }>();
  private newestFailover: FailoverView['lastFailover'];

  constructor(
    private readonly clock: Clock,
    private readonly staleAfterMs = MONITOR_STATUS_STALE_MS,
  ) {}

  ingest(status: MonitorStatus): void {
    this.latest.set(status.monitor, { status, seenAt: this.clock.monotonic() });
    const f = status.lastFailover;
    if (f && (!this.newestFailover || f.epoch > this.newestFailover.epoch)) this.newestFailover = { ...f };
  }

  /** The active monitor's view (the freshest one if, briefly, two claim to be active). */
  failover(): FailoverView {
    const now = this.clock.monotonic();
    const fresh = [...this.latest.values()].filter((e) => now - e.seenAt < this.staleAfterMs);
    const active = fresh.filter((e) => e.status.active).sort((a, b) => b.status.ts - a.status.ts)[0];
    const view: FailoverView = active
      ? { state: active.status.state, monitor: active.status.monitor }
      : {
          state: 'unknown',
          monitor: null,
          reason: fresh.length > 0 ? `no active failover monitor (standby: ${fresh.map((e) => e.status.monitor).sort().join(', ')})` : `no failover monitor heard from in the last ${this.staleAfterMs} ms`,
        };
    if (active?.status.reason !== undefined) view.reason = active.status.reason;
    if (this.newestFailover) view.lastFailover = { ...this.newestFailover };
    return view;
  }
}
