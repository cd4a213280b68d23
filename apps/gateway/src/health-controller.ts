/**
 * Probes and metrics: /healthz (the process answers), /readyz (a leader is known and NATS is
 * connected: the gateway can route a write), /metrics (Prometheus text).
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

  /** 200 only when NATS is connected and a leader is known; else 503 with the reason. */
  @Get('readyz')
  readyz(): { status: string; leader: string } {
    if (!this.link.connected) throw new FlotillaError(ErrorCode.UNAVAILABLE, 'not connected to NATS');
    const leader = this.view.leader();
    if (!leader) throw new FlotillaError(ErrorCode.NO_LEADER, 'no leader is known (no current leader heartbeat)');
    return { status: 'ready', leader: leader.name };
  }

  @Get('metrics')
  @Header('Content-Type', 'text/plain; version=0.0.4; charset=utf-8')
  @Header('Cache-Control', 'no-store')
  metricsText(): Promise<string> {
    return this.metrics.registry.metrics();
  }
}
