/**
 * Probes and metrics: /healthz (the process answers), /readyz (NATS is connected: the gateway can
 * route requests), /metrics (Prometheus text).
 *
 * Readiness is the pod's state, not the cluster's: while the cluster has no leader (a failover, or
 * no follower eligible) the gateway still answers writes with 503 NO_LEADER + Retry-After and
 * serves reads from followers, which it could not do if every gateway pod left the Service. The
 * body names the leader it knows (or null) for whoever waits for one.
 */
import { Controller, Get, Header, Inject } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import { ErrorCode, FlotillaError } from '@flotilla/protocol';
import { ClusterView } from '../../../libs/replication/src/cluster-view';
import { GatewayMetrics } from './metrics';
import { NatsLink } from './nats-link';

@ApiExcludeController()
@Controller()
export class HealthController {
  constructor(
    @Inject(ClusterView) private readonly view: ClusterView,
    @Inject(NatsLink) private readonly link: NatsLink,
    @Inject(GatewayMetrics) private readonly metrics: GatewayMetrics,
  ) {}

  @Get('healthz')
  healthz(): { status: string } {
    return { status: 'ok' };
  }

  /** 200 while NATS is connected (with the leader known, or null); else 503 with the reason. */
  @Get('readyz')
  readyz(): { status: string; leader: string | null } {
    if (!this.link.connected) throw new FlotillaError(ErrorCode.UNAVAILABLE, 'not connected to NATS');
    return { status: 'ready', leader: this.view.leader()?.name ?? null };
  }

  @Get('metrics')
  @Header('Content-Type', 'text/plain; version=0.0.4; charset=utf-8')
  @Header('Cache-Control', 'no-store')
  metricsText(): Promise<string> {
    return this.metrics.registry.metrics();
  }
}
