/**
 * The gateway's NATS connection: keeps reconnecting forever, feeds every heartbeat on `hb.*` into
 * the ClusterView and every monitor status into the MonitorBoard, and implements {@link Requester} for the router. Requests made while
 * disconnected fail at once with NOT_CONNECTED rather than queueing behind the reconnect.
 */
import { connect, createInbox, ErrorCode as NatsErrorCode, Msg, NatsConnection, NatsError } from 'nats';
import { decodeHeartbeat, Subjects } from '@flotilla/protocol';
import type { Logger } from '@flotilla/logging';
import type { ClusterView } from '../../../libs/replication/src/cluster-view';
import { decodeMonitorStatus, MonitorBoard } from './monitor-board';
import { RequestFailure, RequestFailureKind, Requester } from './requester';

/** A rejected heartbeat is logged at most once per this interval (they arrive 4 times a second). */
export const BAD_HEARTBEAT_LOG_INTERVAL_MS = 10_000;
/** How often requests past their deadline are failed (a reply after the deadline never counts). */
export const REQUEST_SWEEP_MS = 20;

interface PendingRequest {
  subject: string;
  deadlineMs: number;
  resolve: (data: Uint8Array) => void;
  reject: (err: RequestFailure) => void;
}

export interface NatsLinkOptions {
  natsUrl: string;
  subjects: Subjects;
  view: ClusterView;
  /** Receives the failover monitors' statuses (subjects.monitorStatus) when given. */
  monitors?: MonitorBoard;
  logger: Logger;
  /** Called for every heartbeat rejected at the boundary (for a metric). */
  onBadHeartbeat?: () => void;
}

export class NatsLink implements Requester {
  private nc: NatsConnection | undefined;
  private isConnected = false;
  private closing = false;
  private lastBadHeartbeatLogMs = -Infinity;
  /** Resolves in the check phase of this event-loop turn: requests made until then share one write. */
  private batch: Promise<void> | undefined;
  /** Requests sent or waiting for their batch, not yet answered. */
  private inFlight = 0;
  /**
   * Request/reply on one wildcard inbox subscription of our own, reply subject `<inbox>.<id>`:
   * nats.js's request() builds a Cancelled NatsError (a stack trace) on every *successful* reply
   * and a timer per request — about 10% of the gateway's CPU per write. One sweep timer instead.
   */
  private readonly inbox = createInbox();
  private readonly pending = new Map<number, PendingRequest>();
  private nextRequestId = 1;
  private sweepTimer: NodeJS.Timeout | undefined;

  constructor(private readonly o: NatsLinkOptions) {}

  /** True while connected to a NATS server. */
  get connected(): boolean {
    return this.isConnected && !this.closing;
  }

  /**
   * Connects (retrying until it succeeds or {@link close} is called) and subscribes to heartbeats.
   * Resolves once connected the first time.
   */
  async start(): Promise<void> {
    const nc = await connect({
      servers: this.o.natsUrl.split(','),
      name: 'flotilla-gateway',
      waitOnFirstConnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      // Without this, nats.js captures a stack trace (new Error() plus a pre-built timeout
      // NatsError) for every request: ~5% of the gateway's CPU per write. Failures keep their
      // code, which is all classify() looks at.
      noAsyncTraces: true,
    });
    if (this.closing) {
      await nc.close();
      return;
    }
    this.nc = nc;
    this.isConnected = true;
    this.o.logger.info('nats connected', { server: nc.getServer() });
    nc.subscribe(`${this.inbox}.*`, { callback: (err, msg) => (err ? undefined : this.onReply(msg)) });
    this.sweepTimer = setInterval(() => this.sweep(), REQUEST_SWEEP_MS);
    this.sweepTimer.unref();
    nc.subscribe(this.o.subjects.heartbeatAll, { callback: (err, msg) => (err ? undefined : this.onHeartbeat(msg.subject, msg.data)) });
    const monitors = this.o.monitors;
    if (monitors) {
      nc.subscribe(this.o.subjects.monitorStatus, {
        callback: (err, msg) => {
          if (err) return;
          try {
            monitors.ingest(decodeMonitorStatus(msg.data));
          } catch (e) {
            this.o.logger.debug('monitor status rejected', { reason: (e as Error).message });
          }
        },
      });
    }
    void this.watchStatus(nc);
    void nc.closed().then((err) => {
      this.isConnected = false;
      if (err) this.o.logger.error('nats connection closed with an error', { err: err.message });
    });
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') {
        this.isConnected = false;
        this.o.logger.warn('nats disconnected', { server: String(s.data) });
      } else if (s.type === 'reconnect') {
        this.isConnected = true;
        this.o.logger.info('nats reconnected', { server: String(s.data) });
      }
    }
  }

  private onHeartbeat(subject: string, data: Uint8Array): void {
    try {
      const hb = decodeHeartbeat(data);
      if (subject !== this.o.subjects.heartbeat(hb.node)) throw new Error(`heartbeat of ${hb.node} arrived on ${subject}`);
      this.o.view.ingest(hb);
    } catch (err) {
      this.o.onBadHeartbeat?.();
      const now = performance.now();
      if (now - this.lastBadHeartbeatLogMs >= BAD_HEARTBEAT_LOG_INTERVAL_MS) {
        this.lastBadHeartbeatLogMs = now;
        this.o.logger.warn('heartbeat rejected', { subject, reason: (err as Error).message });
      }
    }
  }

  async request(subject: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    const nc = this.nc;
    if (!nc || !this.connected) throw new RequestFailure(RequestFailureKind.NOT_CONNECTED, 'not connected to NATS');
    const queuedMs = performance.now();
    this.inFlight++;
    try {
      // Alone, a request goes at once (no latency added when idle); under load it joins the batch.
      if (this.inFlight > 1) {
        await this.nextBatch();
        if (!this.connected) throw new RequestFailure(RequestFailureKind.NOT_CONNECTED, 'not connected to NATS');
      }
      const deadlineMs = queuedMs + timeoutMs;
      if (performance.now() >= deadlineMs) throw new RequestFailure(RequestFailureKind.TIMEOUT, `no reply on ${subject} in time`);
      const id = this.nextRequestId++;
      const reply = new Promise<Uint8Array>((resolve, reject) => this.pending.set(id, { subject, deadlineMs, resolve, reject }));
      try {
        nc.publish(subject, data, { reply: `${this.inbox}.${id}` });
      } catch (err) {
        this.pending.delete(id);
        throw err;
      }
      return await reply;
    } catch (err) {
      throw err instanceof RequestFailure ? err : classify(err, subject);
    } finally {
      this.inFlight--;
    }
  }

  private onReply(msg: Msg): void {
    const id = Number(msg.subject.slice(this.inbox.length + 1));
    const p = this.pending.get(id);
    if (!p) return; // timed out already, or not ours
    this.pending.delete(id);
    if (performance.now() > p.deadlineMs) p.reject(new RequestFailure(RequestFailureKind.TIMEOUT, `no reply on ${p.subject} in time`));
    // The server's answer when nobody subscribes: an empty message with status 503.
    else if (msg.data.length === 0 && msg.headers?.code === 503) p.reject(new RequestFailure(RequestFailureKind.NO_RESPONDERS, `no responders on ${p.subject}`));
    else p.resolve(msg.data);
  }

  private sweep(): void {
    const now = performance.now();
    for (const [id, p] of this.pending) {
      if (p.deadlineMs > now) continue;
      this.pending.delete(id);
      p.reject(new RequestFailure(RequestFailureKind.TIMEOUT, `no reply on ${p.subject} in time`));
    }
  }

  /**
   * Waits for the check phase (setImmediate) of the current event-loop turn. Used only while other
   * requests are in flight (under load), so a lone request is not delayed. nats.js writes its
   * buffered commands to the socket in a microtask after the first one; HTTP requests read in the
   * same turn each run their own microtasks, so without this every request is a write syscall of
   * its own (the largest single cost of the gateway under load). Released together, the requests
   * of one turn are buffered before that microtask runs and go out in one write.
   */
  private nextBatch(): Promise<void> {
    this.batch ??= new Promise((resolve) =>
      setImmediate(() => {
        this.batch = undefined;
        resolve();
      }),
    );
    return this.batch;
  }

  /** Drains the subscription and closes the connection; safe to call more than once. */
  async close(): Promise<void> {
    this.closing = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    for (const p of this.pending.values()) p.reject(new RequestFailure(RequestFailureKind.OTHER, `request on ${p.subject} failed: gateway closing`));
    this.pending.clear();
    const nc = this.nc;
    this.nc = undefined;
    if (!nc || nc.isClosed()) return;
    try {
      await nc.drain();
    } catch (err) {
      this.o.logger.warn('nats drain failed', { err: (err as Error).message });
      await nc.close();
    }
  }
}

function classify(err: unknown, subject: string): RequestFailure {
  const code = err instanceof NatsError ? err.code : undefined;
  if (code === NatsErrorCode.NoResponders) return new RequestFailure(RequestFailureKind.NO_RESPONDERS, `no responders on ${subject}`, { cause: err });
  if (code === NatsErrorCode.Timeout) return new RequestFailure(RequestFailureKind.TIMEOUT, `no reply on ${subject} in time`, { cause: err });
  return new RequestFailure(RequestFailureKind.OTHER, `request on ${subject} failed: ${(err as Error).message}`, { cause: err });
}
