/**
 * The gateway's NATS connection: keeps reconnecting forever, feeds every heartbeat on `hb.*` into
 * the ClusterView and every monitor status into the MonitorBoard, and implements {@link Requester} for the router. Requests made while
 * disconnected fail at once with NOT_CONNECTED rather than queueing behind the reconnect.
 */
import { connect, createInbox, ErrorCode as NatsErrorCode, Msg, NatsConnection, NatsError } from 'nats';
import {
  BATCH_FRAME_BYTES_MAX,
  BatchItem,
  batchItemBytes,
  decodeBatchFrame,
  decodeHeartbeat,
  encodeBatchFrame,
  ErrorCode,
  FlotillaError,
  isBatchFrame,
  packBatchFrames,
  Subjects,
} from '@flotilla/protocol';
import type { Logger } from '@flotilla/logging';
import type { ClusterView } from '../../../libs/replication/src/cluster-view';
import { decodeMonitorStatus, MonitorBoard } from './monitor-board';
import { RequestFailure, RequestFailureKind, Requester } from './requester';

/** A rejected heartbeat is logged at most once per this interval (they arrive 4 times a second). */
export const BAD_HEARTBEAT_LOG_INTERVAL_MS = 10_000;
/** How often requests past their deadline are failed (a reply after the deadline never counts). */
export const REQUEST_SWEEP_MS = 20;

/** Request ids are u32 in batch frames: they wrap there, long after any request ended. */
const REQUEST_ID_MAX = 0xffff_ffff;
/** nats-server's default max_payload, until the server's INFO says otherwise. */
const NATS_DEFAULT_MAX_PAYLOAD = 1024 * 1024;

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
  /**
   * Subjects whose responders understand batch frames (the leader's `write`): under load, the
   * requests to one of them made in the same event-loop turn go as one frame, and the replies come
   * back in frames. Other subjects get one message per request.
   */
  batchSubjects?: readonly string[];
}

/** A frame sent and not yet fully answered: its requests' ids, and when the last one gives up. */
interface SentFrame {
  ids: Set<number>;
  deadlineMs: number;
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
  private readonly batchSubjects: ReadonlySet<string>;
  /** Requests to batch subjects waiting for the end of this turn, by subject. */
  private outbox = new Map<string, BatchItem[]>();
  /** Frames in flight, by frame id (reply subject `<inbox>.b<frame id>`). */
  private readonly frames = new Map<number, SentFrame>();
  private nextFrameId = 1;

  constructor(private readonly o: NatsLinkOptions) {
    this.batchSubjects = new Set(o.batchSubjects ?? []);
  }

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
    // Larger than the server takes in one message: it would fail in publish, which reads as "fate
    // unknown" (a 503 and, keyed, retries for the whole budget). It was never sent: say so, 413.
    const maxPayload = nc.info?.max_payload ?? NATS_DEFAULT_MAX_PAYLOAD;
    if (data.length > maxPayload) {
      throw new FlotillaError(ErrorCode.PAYLOAD_TOO_LARGE, `the request takes ${data.length} bytes on the wire, more than the ${maxPayload} a NATS message may carry; nothing was sent: make it smaller`);
    }
    const queuedMs = performance.now();
    this.inFlight++;
    try {
      const deadlineMs = queuedMs + timeoutMs;
      // Alone, a request goes at once (no latency added when idle). Under load, a request to a
      // batch subject joins the frame sent at the end of this turn, any other the turn's one write.
      if (this.inFlight > 1 && this.batchSubjects.has(subject) && batchItemBytes(data) <= BATCH_FRAME_BYTES_MAX / 2) {
        return await this.enqueue(subject, data, deadlineMs);
      }
      if (this.inFlight > 1) {
        await this.nextBatch();
        if (!this.connected) throw new RequestFailure(RequestFailureKind.NOT_CONNECTED, 'not connected to NATS');
      }
      if (performance.now() >= deadlineMs) throw new RequestFailure(RequestFailureKind.TIMEOUT, `no reply on ${subject} in time`);
      const id = this.newRequestId();
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

  private newRequestId(): number {
    const id = this.nextRequestId;
    this.nextRequestId = id >= REQUEST_ID_MAX ? 1 : id + 1;
    return id;
  }

  /** Queues a request for this turn's frame to `subject`; resolves with its reply. */
  private enqueue(subject: string, data: Uint8Array, deadlineMs: number): Promise<Uint8Array> {
    const id = this.newRequestId();
    const reply = new Promise<Uint8Array>((resolve, reject) => this.pending.set(id, { subject, deadlineMs, resolve, reject }));
    let items = this.outbox.get(subject);
    if (!items) this.outbox.set(subject, (items = []));
    items.push({ id, data });
    void this.nextBatch();
    return reply;
  }

  /** Sends what {@link enqueue} collected this turn: a lone request plainly, more as frames. */
  private sendOutbox(): void {
    if (this.outbox.size === 0) return;
    const outbox = this.outbox;
    this.outbox = new Map();
    const nc = this.nc;
    for (const [subject, items] of outbox) {
      if (!nc || !this.connected) {
        for (const it of items) this.fail(it.id, new RequestFailure(RequestFailureKind.NOT_CONNECTED, 'not connected to NATS'));
        continue;
      }
      // Those the sweep timed out meanwhile are no longer pending: not sent.
      const live = items.filter((it) => this.pending.has(it.id));
      for (const frame of packBatchFrames(live)) {
        try {
          if (frame.length === 1) {
            nc.publish(subject, frame[0].data, { reply: `${this.inbox}.${frame[0].id}` });
            continue;
          }
          const frameId = this.nextFrameId++;
          let deadlineMs = 0;
          for (const it of frame) deadlineMs = Math.max(deadlineMs, this.pending.get(it.id)!.deadlineMs);
          this.frames.set(frameId, { ids: new Set(frame.map((it) => it.id)), deadlineMs });
          nc.publish(subject, encodeBatchFrame(frame), { reply: `${this.inbox}.b${frameId}` });
        } catch (err) {
          const failure = classify(err, subject);
          for (const it of frame) this.fail(it.id, failure);
        }
      }
    }
  }

  private fail(id: number, failure: RequestFailure): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    p.reject(failure);
  }

  private onReply(msg: Msg): void {
    const tag = msg.subject.slice(this.inbox.length + 1);
    if (tag.startsWith('b')) return this.onFrameReply(Number(tag.slice(1)), msg);
    this.settle(Number(tag), msg);
  }

  /** Settles request `id` with a reply (ignored when it already timed out or is not ours). */
  private settle(id: number, msg: Msg, data: Uint8Array = msg.data): void {
    const p = this.pending.get(id);
    if (!p) return; // timed out already, or not ours
    this.pending.delete(id);
    if (performance.now() > p.deadlineMs) p.reject(new RequestFailure(RequestFailureKind.TIMEOUT, `no reply on ${p.subject} in time`));
    // The server's answer when nobody subscribes: an empty message with status 503.
    else if (data.length === 0 && msg.headers?.code === 503) p.reject(new RequestFailure(RequestFailureKind.NO_RESPONDERS, `no responders on ${p.subject}`));
    else p.resolve(data);
  }

  /**
   * A reply to a frame: a frame of replies settles the requests it names; anything else (no
   * responders, or a responder that refused the frame as a whole) is the answer to all of them.
   */
  private onFrameReply(frameId: number, msg: Msg): void {
    const frame = this.frames.get(frameId);
    if (!frame) return;
    if (!isBatchFrame(msg.data)) {
      this.frames.delete(frameId);
      for (const id of frame.ids) this.settle(id, msg);
      return;
    }
    let items: BatchItem[];
    try {
      items = decodeBatchFrame(msg.data);
    } catch (err) {
      // Its requests time out (fate unknown); a leader answering garbage is worth a line.
      this.o.logger.warn('batch reply rejected', { reason: (err as Error).message });
      return;
    }
    for (const it of items) {
      if (!frame.ids.delete(it.id)) continue; // not of this frame: never settle another's request
      this.settle(it.id, msg, it.data);
    }
    if (frame.ids.size === 0) this.frames.delete(frameId);
  }

  private sweep(): void {
    const now = performance.now();
    for (const [frameId, f] of this.frames) if (f.deadlineMs <= now) this.frames.delete(frameId);
    for (const [id, p] of this.pending) if (p.deadlineMs <= now) this.fail(id, new RequestFailure(RequestFailureKind.TIMEOUT, `no reply on ${p.subject} in time`));
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
        this.sendOutbox();
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
    this.outbox.clear();
    this.frames.clear();
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
