/**
 * The monitor's small HTTP server, for Kubernetes probes and Prometheus: /healthz (process alive),
 * /readyz (connected to NATS: it can watch and act), /metrics. Operators read decisions from the
 * JSON logs and from GET /v1/cluster on the gateway (`failover`), not from here.
 */
import { Controller, DynamicModule, Get, Module, Res } from '@nestjs/common';
import type { Response } from 'express';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { FailoverMonitor } from '@flotilla/election';

/** Metric names, declared once. */
export const MonitorMetric = {
  ACTIVE: 'flotilla_monitor_active',
  STATE: 'flotilla_monitor_state',
  EPOCH: 'flotilla_monitor_lease_epoch',
  FAILOVERS: 'flotilla_monitor_failovers_total',
  NATS_CONNECTED: 'flotilla_monitor_nats_connected',
} as const;

/** Every state a monitor reports, one label value each of {@link MonitorMetric.STATE}. */
export const MONITOR_STATES = ['ok', 'failing-over', 'no-candidate', 'standby'] as const;

/** What the HTTP server needs from the process. */
export interface MonitorProbe {
  monitor: FailoverMonitor;
  natsConnected(): boolean;
}

function buildRegistry(probe: MonitorProbe): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'flotilla_monitor_' });
  const registers = [registry];
  new Gauge({ name: MonitorMetric.ACTIVE, help: '1 while this monitor holds the monitor lease and acts', registers, collect() { this.set(probe.monitor.isActive ? 1 : 0); } });
  new Gauge({
    name: MonitorMetric.STATE,
    help: '1 for the current state of this monitor',
    labelNames: ['state'],
    registers,
    collect() {
      const state = probe.monitor.status().state;
      for (const s of MONITOR_STATES) this.set({ state: s }, s === state ? 1 : 0);
    },
  });
  new Gauge({ name: MonitorMetric.EPOCH, help: 'Epoch of the replica lease as last read', registers, collect() { this.set(probe.monitor.status().epoch); } });
  new Gauge({ name: MonitorMetric.FAILOVERS, help: 'Failovers this monitor performed since it started', registers, collect() { this.set(probe.monitor.failovers); } });
  new Gauge({ name: MonitorMetric.NATS_CONNECTED, help: '1 while connected to NATS', registers, collect() { this.set(probe.natsConnected() ? 1 : 0); } });
  return registry;
}

function createHealthController(probe: MonitorProbe) {
  const registry = buildRegistry(probe);
  @Controller()
  class MonitorHealthController {
    @Get('healthz')
    healthz() {
      const s = probe.monitor.status();
      return { status: 'ok', active: s.active, state: s.state };
    }

    @Get('readyz')
    readyz(@Res() res: Response) {
      if (probe.natsConnected()) res.status(200).json({ status: 'ready', active: probe.monitor.isActive });
      else res.status(503).setHeader('Retry-After', '1').json({ error: { code: 'UNAVAILABLE', message: 'not connected to NATS' } });
    }

    @Get('metrics')
    async metrics(@Res() res: Response) {
      res.setHeader('Content-Type', registry.contentType);
      res.send(await registry.metrics());
    }
  }
  return MonitorHealthController;
}

@Module({})
export class MonitorHttpModule {
  static forProbe(probe: MonitorProbe): DynamicModule {
    return { module: MonitorHttpModule, controllers: [createHealthController(probe)] };
  }
}
