/**
 * The replica's own small HTTP server, for Kubernetes probes and Prometheus: /healthz (process
 * alive), /readyz (can serve reads: leader with a valid lease, or follower on the live stream),
 * /metrics. Clients use the gateway, or the replica's public API on apiPort (see main.ts).
 */
import { Controller, DynamicModule, Get, HttpCode, Module, Res } from '@nestjs/common';
import type { Response } from 'express';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { ReplicaNode } from '@flotilla/replication';

export const REPLICA_NODE = Symbol('REPLICA_NODE');

/** Metric names, declared once. */
export const ReplicaMetric = {
  LSN: 'flotilla_replica_lsn',
  EPOCH: 'flotilla_replica_epoch',
  IS_LEADER: 'flotilla_replica_is_leader',
  LAG_MS: 'flotilla_replica_lag_ms',
  COUNTER: 'flotilla_replica_events_total',
  DEGRADED: 'flotilla_replica_degraded',
  SYNC_FOLLOWERS: 'flotilla_replica_sync_followers',
} as const;

function buildRegistry(node: ReplicaNode): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  new Gauge({ name: ReplicaMetric.LSN, help: 'Last LSN applied on this replica', registers: [registry], collect() { this.set(Number(node.heartbeatMessage().lsn)); } });
  new Gauge({ name: ReplicaMetric.EPOCH, help: 'Epoch this replica knows', registers: [registry], collect() { this.set(node.heartbeatMessage().epoch); } });
  new Gauge({ name: ReplicaMetric.IS_LEADER, help: '1 when this replica leads', registers: [registry], collect() { this.set(node.currentRole === 'leader' ? 1 : 0); } });
  new Gauge({ name: ReplicaMetric.LAG_MS, help: 'Replication lag in ms', registers: [registry], collect() { this.set(node.heartbeatMessage().lagMs); } });
  new Gauge({ name: ReplicaMetric.DEGRADED, help: '1 while semi-sync/sync runs degraded to async (leader)', registers: [registry], collect() { this.set(node.heartbeatMessage().degraded ? 1 : 0); } });
  new Gauge({ name: ReplicaMetric.SYNC_FOLLOWERS, help: 'Followers that are synchronous now (leader)', registers: [registry], collect() { this.set(node.heartbeatMessage().syncSet?.length ?? 0); } });
  new Gauge({
    name: ReplicaMetric.COUNTER,
    help: 'Replication events (catchups, snapshotsInstalled, refused, ...)',
    labelNames: ['event'],
    registers: [registry],
    collect() {
      for (const [k, v] of Object.entries(node.counters())) this.set({ event: k }, v);
    },
  });
  return registry;
}

export function createHealthController(node: ReplicaNode) {
  const registry = buildRegistry(node);
  @Controller()
  class HealthController {
    @Get('healthz')
    @HttpCode(200)
    healthz() {
      return { status: 'ok', role: node.currentRole };
    }

    @Get('readyz')
    readyz(@Res() res: Response) {
      const hb = node.heartbeatMessage();
      const ready = node.isReady();
      if (!ready) res.setHeader('Retry-After', '1');
      res.status(ready ? 200 : 503).json(ready ? { status: 'ready', role: hb.role, lsn: hb.lsn } : { error: { code: 'UNAVAILABLE', message: `not ready: ${hb.role}${hb.problem ? `, ${hb.problem}` : ''}` } });
    }

    @Get('metrics')
    async metrics(@Res() res: Response) {
      res.setHeader('Content-Type', registry.contentType);
      res.send(await registry.metrics());
    }
  }
  return HealthController;
}

@Module({})
export class ReplicaHttpModule {
  static forNode(node: ReplicaNode): DynamicModule {
    return { module: ReplicaHttpModule, controllers: [createHealthController(node)] };
  }
}
