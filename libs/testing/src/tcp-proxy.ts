import * as net from 'node:net';
import { track, untrack } from './tracker';

/** What a {@link TcpProxy} does with traffic. */
export type ProxyMode = 'forward' | 'refuse' | 'blackhole';

/**
 * A loopback TCP proxy for fault tests: clients connect to `port`, traffic is forwarded to the
 * target. `cut()` drops every connection and refuses new ones (a crashed peer), `blackhole()`
 * keeps connections open but delivers nothing (a network partition: peers see timeouts, not
 * resets), `heal()` goes back to forwarding. The listening port never changes.
 */
export class TcpProxy {
  private server?: net.Server;
  private readonly pairs = new Set<{ client: net.Socket; upstream?: net.Socket }>();
  private mode: ProxyMode = 'forward';
  private portValue = 0;

  constructor(
    private readonly targetPort: number,
    private readonly targetHost = '127.0.0.1',
  ) {}

  /** Starts listening on a free 127.0.0.1 port (or `port`) and resolves to it. */
  static async start(targetPort: number, options: { targetHost?: string; port?: number } = {}): Promise<TcpProxy> {
    const proxy = new TcpProxy(targetPort, options.targetHost);
    await proxy.listen(options.port ?? 0);
    return proxy;
  }

  get port(): number {
    return this.portValue;
  }

  /** `nats://127.0.0.1:<port>`, for pointing a process at NATS through the proxy. */
  get natsUrl(): string {
    return `nats://127.0.0.1:${this.portValue}`;
  }

  get currentMode(): ProxyMode {
    return this.mode;
  }

  /** Open client connections. */
  get connections(): number {
    return this.pairs.size;
  }

  async listen(port = 0): Promise<number> {
    if (this.server) throw new Error('TcpProxy already listening');
    const server = net.createServer((client) => this.accept(client));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.portValue = (server.address() as net.AddressInfo).port;
    track(this);
    return this.portValue;
  }

  readonly describe = 'TcpProxy';

  /** Destroys every connection and refuses new ones until {@link heal}. */
  cut(): void {
    this.mode = 'refuse';
    this.dropAll();
  }

  /** Stops delivering bytes both ways and holds new connections silently until {@link heal}. */
  blackhole(): void {
    this.mode = 'blackhole';
    for (const pair of this.pairs) {
      pair.client.pause();
      pair.upstream?.pause();
    }
  }

  /**
   * Forwards again. Connections held during a blackhole are dropped (bytes were lost, so
   * the peers must reconnect, as after a real partition with expired TCP state).
   */
  heal(): void {
    if (this.mode === 'blackhole') this.dropAll();
    this.mode = 'forward';
  }

  /** Stops listening and drops every connection. */
  async close(): Promise<void> {
    untrack(this);
    this.dropAll();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  stop(): Promise<void> {
    return this.close();
  }

  private dropAll(): void {
    for (const pair of this.pairs) {
      pair.client.destroy();
      pair.upstream?.destroy();
    }
    this.pairs.clear();
  }

  private accept(client: net.Socket): void {
    if (this.mode === 'refuse') {
      client.destroy();
      return;
    }
    const pair: { client: net.Socket; upstream?: net.Socket } = { client };
    this.pairs.add(pair);
    const drop = () => {
      client.destroy();
      pair.upstream?.destroy();
      this.pairs.delete(pair);
    };
    client.on('error', drop);
    client.on('close', drop);
    if (this.mode === 'blackhole') {
      client.pause();
      return;
    }
    const upstream = net.connect({ host: this.targetHost, port: this.targetPort });
    pair.upstream = upstream;
    upstream.on('error', drop);
    upstream.on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  }
}
