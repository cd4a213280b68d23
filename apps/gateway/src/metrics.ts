/**
 * Prometheus metrics of the gateway, on its own registry (GET /metrics). Names are declared once,
 * here. HTTP metrics are labelled by route pattern (never the raw URL, to bound cardinality),
 * method and status.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ClusterView } from '../../../libs/replication/src/cluster-view';

export const METRIC = {
  httpRequests: 'flotilla_gateway_http_requests_total',
  httpRequestDuration: 'flotilla_gateway_http_request_duration_seconds',
  natsConnected: 'flotilla_gateway_nats_connected',
  nodesHealthy: 'flotilla_gateway_nodes_healthy',
  leaderKnown: 'flotilla_gateway_leader_known',
  heartbeatsRejected: 'flotilla_gateway_heartbeats_rejected_total',
} as const;

/** Label for requests that matched no route. */
export const UNMATCHED_ROUTE = 'unmatched';
/** Latency buckets in seconds: 1 ms .. 10 s. */
export const HTTP_DURATION_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class GatewayMetrics {
  readonly registry = new Registry();
  readonly httpRequests: Counter<'route' | 'method' | 'status'>;
  readonly httpRequestDuration: Histogram<'route' | 'method' | 'status'>;
  readonly heartbeatsRejected: Counter;

  constructor(view: ClusterView, natsConnected: () => boolean, options: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.httpRequests = new Counter({ name: METRIC.httpRequests, help: 'HTTP requests answered, by route, method and status', labelNames: ['route', 'method', 'status'], registers });
    this.httpRequestDuration = new Histogram({
      name: METRIC.httpRequestDuration,
      help: 'HTTP request latency in seconds, by route, method and status',
      labelNames: ['route', 'method', 'status'],
      buckets: HTTP_DURATION_BUCKETS_S,
      registers,
    });
    this.heartbeatsRejected = new Counter({ name: METRIC.heartbeatsRejected, help: 'Heartbeats rejected at the boundary', registers });
    new Gauge({ name: METRIC.natsConnected, help: '1 while connected to NATS', registers, collect() { this.set(natsConnected() ? 1 : 0); } });
    new Gauge({ name: METRIC.nodesHealthy, help: 'Replicas whose heartbeats are current', registers, collect() { this.set(view.nodes().filter((n) => n.healthy).length); } });
    new Gauge({ name: METRIC.leaderKnown, help: '1 while a leader is known', registers, collect() { this.set(view.leader() ? 1 : 0); } });
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'flotilla_gateway_' });
  }

  /** Records one answered request. */
  observe(route: string, method: string, status: number, seconds: number): void {
    const labels = { route, method, status: String(status) };
    this.httpRequests.inc(labels);
    this.httpRequestDuration.observe(labels, seconds);
  }
}

/** The request as the metrics hooks see it (a subset of Fastify's request). */
interface MetricsRequest {
  method: string;
  /** The pattern of the matched route; undefined when none matched. */
  routeOptions: { url?: string };
}
/** The reply as the metrics hooks see it (a subset of Fastify's reply). */
interface MetricsReply {
  statusCode: number;
  /** Milliseconds since the request arrived. */
  elapsedTime: number;
}

/** What {@link installHttpMetrics} needs from the Fastify instance. */
export interface MetricsHost {
  addHook(name: 'onError', hook: (request: MetricsRequest, reply: MetricsReply, error: unknown, done: () => void) => void): unknown;
  addHook(name: 'onResponse', hook: (request: MetricsRequest, reply: MetricsReply, done: () => void) => void): unknown;
}

/**
 * Records every request once its response is sent. A request whose body could not be read
 * (`isBodyReadError`) counts as {@link UNMATCHED_ROUTE}: it never reached its route.
 */
export function installHttpMetrics(fastify: MetricsHost, metrics: GatewayMetrics, isBodyReadError: (err: unknown) => boolean): void {
  const bodyRejected = new WeakSet<MetricsRequest>();
  fastify.addHook('onError', (request, _reply, error, done) => {
    if (isBodyReadError(error)) bodyRejected.add(request);
    done();
  });
  fastify.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url === undefined || bodyRejected.has(request) ? UNMATCHED_ROUTE : request.routeOptions.url;
    metrics.observe(route, request.method, reply.statusCode, reply.elapsedTime / 1000);
    done();
  });
}
