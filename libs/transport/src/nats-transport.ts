/** {@link Transport} on a core NATS connection (package `nats` 2.x). */
import { connect, ErrorCode as NatsErrorCode, NatsConnection, NatsError } from 'nats';
import { IncomingMessage, Subscription, Transport, TransportError, TransportFailure } from './transport';

export interface NatsTransportOptions {
  servers: string;
  /** Client name shown by the server's monitoring. */
  name: string;
  /**
   * Called on connection state changes, for logging: disconnect, reconnect, error, update and
   * ldm (lame duck). Not nats.js's debug events (`pingTimer` every ping interval, `reconnecting`
   * on every dial while the server is down), which filled the logs with one line every 2 s, or 4 a
   * second during an outage.
   */
  onStatus?: (status: string, data?: unknown) => void;
}

/** nats.js status events that say nothing an operator needs (see {@link NatsTransportOptions.onStatus}). */
export const NATS_DEBUG_EVENTS: ReadonlySet<string> = new Set(['pingTimer', 'reconnecting', 'staleConnection']);

export class NatsTransport implements Transport {
  private isConnected = true;
  private constructor(readonly nc: NatsConnection) {}

  /** Connects, retrying forever in the background after the first success. */
  static async connect(options: NatsTransportOptions): Promise<NatsTransport> {
    const nc = await connect({
      servers: options.servers,
      name: options.name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      pingInterval: 2000,
      maxPingOut: 3,
      waitOnFirstConnect: true,
    });
    const t = new NatsTransport(nc);
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') t.isConnected = false;
        if (s.type === 'reconnect') t.isConnected = true;
        if (!NATS_DEBUG_EVENTS.has(s.type)) options.onStatus?.(s.type, s.data);
      }
    })();
    return t;
  }

  get connected(): boolean {
    return this.isConnected && !this.nc.isClosed() && !this.nc.isDraining();
  }

  publish(subject: string, data: Uint8Array): void {
    if (this.nc.isClosed()) return;
    this.nc.publish(subject, data);
  }

  subscribe(subject: string, handler: (msg: IncomingMessage) => void): Subscription {
    const sub = this.nc.subscribe(subject, {
      callback: (err, m) => {
        if (err) return;
        handler({
          subject: m.subject,
          data: m.data,
          respond: m.reply ? (data: Uint8Array) => m.respond(data) : undefined,
        });
      },
    });
    return { unsubscribe: () => sub.unsubscribe() };
  }

  async request(subject: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    if (this.nc.isClosed()) throw new TransportError(TransportFailure.CLOSED, 'connection closed');
    try {
      const m = await this.nc.request(subject, data, { timeout: timeoutMs });
      return m.data;
    } catch (err) {
      const code = (err as NatsError).code;
      if (code === NatsErrorCode.NoResponders) throw new TransportError(TransportFailure.NO_RESPONDERS, `no responders on ${subject}`, { cause: err });
      if (code === NatsErrorCode.Timeout) throw new TransportError(TransportFailure.TIMEOUT, `no answer on ${subject} within ${timeoutMs} ms`, { cause: err });
      throw new TransportError(TransportFailure.CLOSED, `request on ${subject}: ${(err as Error).message}`, { cause: err });
    }
  }

  async close(): Promise<void> {
    if (!this.nc.isClosed()) await this.nc.drain().catch(() => this.nc.close());
  }
}
