import { FakeClock } from '@flotilla/logging';
import { ClusterView } from '../../../libs/replication/src/cluster-view';
import { isBodyReadError } from './error-filter';
import { BodyError } from './http-body';
import { GatewayMetrics, installHttpMetrics, MetricsHost } from './metrics';

interface FakeRequest {
  method: string;
  routeOptions: { url?: string };
}
interface FakeReply {
  statusCode: number;
  elapsedTime: number;
}
type OnError = (request: FakeRequest, reply: FakeReply, error: unknown, done: () => void) => void;
type OnResponse = (request: FakeRequest, reply: FakeReply, done: () => void) => void;

/** A hand-written stand-in for the Fastify instance: records the hooks, replays requests through them. */
class FakeFastify implements MetricsHost {
  private onError: OnError = () => undefined;
  private onResponse: OnResponse = () => undefined;
  addHook(name: 'onError', hook: OnError): void;
  addHook(name: 'onResponse', hook: OnResponse): void;
  addHook(name: 'onError' | 'onResponse', hook: OnError | OnResponse): void {
    if (name === 'onError') this.onError = hook as OnError;
    else this.onResponse = hook as OnResponse;
  }
  /** One request: `url` is the matched route pattern (undefined: none), `error` what its lifecycle raised. */
  serve(method: string, url: string | undefined, statusCode: number, error?: unknown): void {
    const request: FakeRequest = { method, routeOptions: { url } };
    const reply: FakeReply = { statusCode, elapsedTime: 2.5 };
    if (error !== undefined) this.onError(request, reply, error, () => undefined);
    this.onResponse(request, reply, () => undefined);
  }
}

describe('installHttpMetrics', () => {
  it('counts requests by route pattern, method and status; unmatched routes and unread bodies as "unmatched"', async () => {
    const metrics = new GatewayMetrics(new ClusterView({ clock: new FakeClock(), staleAfterMs: 1000 }), () => true, { processMetrics: false });
    const fastify = new FakeFastify();
    installHttpMetrics(fastify, metrics, isBodyReadError);
    fastify.serve('POST', '/v1/execute', 200);
    fastify.serve('POST', '/v1/execute', 200);
    fastify.serve('POST', '/v1/execute', 400, new Error('a validation error reached the route'));
    fastify.serve('POST', '/v1/execute', 400, new BodyError('entity.parse.failed', 400, 'bad JSON'));
    fastify.serve('POST', '/v1/execute', 413, Object.assign(new Error('too large'), { code: 'FST_ERR_CTP_BODY_TOO_LARGE', statusCode: 413 }));
    fastify.serve('GET', undefined, 404);
    const text = await metrics.registry.metrics();
    expect(text).toContain('flotilla_gateway_http_requests_total{route="/v1/execute",method="POST",status="200"} 2');
    expect(text).toContain('flotilla_gateway_http_requests_total{route="/v1/execute",method="POST",status="400"} 1');
    expect(text).toContain('flotilla_gateway_http_requests_total{route="unmatched",method="POST",status="400"} 1');
    expect(text).toContain('flotilla_gateway_http_requests_total{route="unmatched",method="POST",status="413"} 1');
    expect(text).toContain('flotilla_gateway_http_requests_total{route="unmatched",method="GET",status="404"} 1');
    expect(text).toContain('flotilla_gateway_http_request_duration_seconds_bucket{le="0.005",route="/v1/execute",method="POST",status="200"} 2');
    expect(text).toContain('flotilla_gateway_http_request_duration_seconds_bucket{le="0.001",route="/v1/execute",method="POST",status="200"} 0');
  });
});
