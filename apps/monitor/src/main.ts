/**
 * The failover monitor process: `node dist/apps/monitor/src/main.js`, configured by FLOTILLA_*
 * (FLOTILLA_NODE = this monitor's name, e.g. monitor-0). Two run; the one holding the monitor
 * lease (KV bucket flotilla-<cluster> key `monitor`, or Lease <cluster>-monitor with
 * FLOTILLA_LEASE_BACKEND=kubernetes) acts, the other keeps listening and takes over when that
 * lease runs out. All decisions live in libs/election (FailoverMonitor); this file
 * wires NATS, the leases, a timer and the HTTP probes.
 */
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { ConfigError, leaseRequestTimeoutMs, leaseSafetyMarginMs, loadConfig, overridesFromArgv } from '@flotilla/config';
import { FailoverMonitor, KubernetesLeaser, kubernetesLeaseName, LeaseKeeper, Leaser, leaseStoreRetry, NatsKvLeaser, openWhenReady, PodRoleLabeler } from '@flotilla/election';
import type { FlotillaConfig } from '@flotilla/config';
import type { NatsConnection } from 'nats';
import type { Logger } from '@flotilla/logging';
import { createLogger, systemClock } from '@flotilla/logging';
import { ControlRequest, decodeEnvelope, decodeHeartbeat, encode, MonitorStatus, subjectsFor } from '@flotilla/protocol';
import { NatsTransport } from '@flotilla/transport';
import { MonitorHttpModule } from './monitor-http.module';

/** Name of a monitor started without FLOTILLA_NODE. */
export const DEFAULT_MONITOR_NAME = 'monitor-0';
/** KV key of the monitors' own lease (the replicas' lease is key `leader` in the same bucket). */
export const MONITOR_LEASE_KEY = 'monitor';
export const REPLICA_LEASE_KEY = 'leader';
/** How long a control request (step-down) waits for the replica's answer. */
export const CONTROL_TIMEOUT_MS = 2000;
/** A rejected heartbeat is logged at most once per this interval. */
const BAD_HEARTBEAT_LOG_INTERVAL_MS = 10_000;

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(overridesFromArgv(process.argv.slice(2)), process.env);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(2);
  }
  const name = config.node ?? DEFAULT_MONITOR_NAME;
  const log = createLogger({ app: 'monitor', node: name, cluster: config.cluster }, config.logLevel);
  const subjects = subjectsFor(config.cluster);

  // Heartbeats come over NATS: while the connection is down the monitor judges nobody, and that
  // time counts as nobody's silence.
  let monitor: FailoverMonitor | undefined;
  const transport = await NatsTransport.connect({
    servers: config.natsUrl,
    name: `monitor-${name}`,
    onStatus: (status, data) => {
      log.info('nats connection', { status, data: typeof data === 'string' ? data : undefined });
      if (status === 'disconnect') monitor?.heartbeatsCut();
      if (status === 'reconnect') monitor?.heartbeatsResumed();
    },
  });
  const { replicaLease, monitorLease } = await openLeases(config, transport.nc, log);
  log.info('lease backend', { backend: replicaLease.kind });

  monitor = new FailoverMonitor(
    { name, failureTimeoutMs: config.failureTimeoutMs, maxLagOnFailover: config.maxLagOnFailover, leaseTtlMs: config.leaseTtlMs },
    {
      clock: systemClock,
      log,
      leaser: replicaLease,
      link: {
        sendControl(node: string, request: ControlRequest) {
          transport.request(subjects.control(node), encode(request), CONTROL_TIMEOUT_MS).then(
            (reply) => log.info('control request answered', { node, request: request.type, reply: safeType(reply) }),
            (err: Error) => log.warn('control request failed', { node, request: request.type, err: err.message }),
          );
        },
        publishStatus(status: MonitorStatus) {
          transport.publish(subjects.monitorStatus, encode(status));
        },
      },
      // On Kubernetes the -rw Service selects the Pod labelled leader: a dead leader (its node
      // gone, the Pod still Ready until the node controller notices) or one cut off from the API
      // server cannot drop its own label, so the monitor does it for the Pod it took the lease from.
      onPromoted:
        config.leaseBackend === 'kubernetes'
          ? ({ from }) => {
              if (!from) return;
              PodRoleLabeler.fromEnvironment(from)
                .setRole('follower')
                .then(
                  () => log.info('former leader relabelled', { pod: from, role: 'follower' }),
                  (err: Error) => log.warn('former leader not relabelled (it relabels itself when it runs again)', { pod: from, err: err.message }),
                );
            }
          : undefined,
    },
  );

  let lastBadHeartbeatLog = -Infinity;
  transport.subscribe(subjects.heartbeatAll, (msg) => {
    try {
      const hb = decodeHeartbeat(msg.data);
      if (msg.subject !== subjects.heartbeat(hb.node)) throw new Error(`heartbeat of ${hb.node} arrived on ${msg.subject}`);
      monitor.onHeartbeat(hb);
    } catch (err) {
      const now = performance.now();
      if (now - lastBadHeartbeatLog >= BAD_HEARTBEAT_LOG_INTERVAL_MS) {
        lastBadHeartbeatLog = now;
        log.warn('heartbeat rejected', { subject: msg.subject, reason: (err as Error).message });
      }
    }
  });
  const leaseWatch = replicaLease.watch((record) => monitor.onLease(record));
  monitor.onLease(await replicaLease.read().catch(() => null));

  const keeper = new LeaseKeeper(
    monitorLease,
    systemClock,
    log.child({ component: 'monitor-lease' }),
    {
      node: name,
      ttlMs: config.leaseTtlMs,
      renewMs: config.leaseRenewMs,
      safetyMarginMs: leaseSafetyMarginMs(config.leaseTtlMs),
      knownEpoch: () => 0,
      takeExpired: true,
      // Cut off from NATS it hears no heartbeats and could fail nobody over: let the peer hold it.
      mayHold: () => transport.connected,
    },
    (view) => monitor.setActive(view.isLeader && keeper.isValidLeader()),
  );
  await keeper.start();
  // Active only while the monitor lease is held and cannot have run out for the other monitor.
  const tickTimer = setInterval(() => {
    monitor.setActive(keeper.isValidLeader());
    void monitor.tick().catch((err: Error) => log.error('monitor tick failed', { err: err.message }));
  }, config.monitorIntervalMs);

  const app = await NestFactory.create(MonitorHttpModule.forProbe({ monitor, natsConnected: () => transport.connected }), { logger: false });
  await app.listen(config.httpPort, config.httpHost);
  log.info('monitor started', {
    port: config.httpPort,
    failureTimeoutMs: config.failureTimeoutMs,
    maxLagOnFailover: config.maxLagOnFailover,
    monitorIntervalMs: config.monitorIntervalMs,
    leaseTtlMs: config.leaseTtlMs,
  });

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info('shutting down', { signal });
    clearInterval(tickTimer);
    keeper.stop();
    leaseWatch.stop();
    // Hand the monitor lease back so the standby takes over at once rather than after the TTL.
    await keeper.release();
    monitor.setActive(false);
    await app.close().catch(() => undefined);
    await transport.close().catch(() => undefined);
    log.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

/**
 * The replica lease and the monitor lease on the configured backend: NATS KV bucket
 * `flotilla-<cluster>` keys `leader` and `monitor`, or Kubernetes Leases `<cluster>-leader` and
 * `<cluster>-monitor` in the pod's namespace.
 */
async function openLeases(config: FlotillaConfig, nc: NatsConnection, log: Logger): Promise<{ replicaLease: Leaser; monitorLease: Leaser }> {
  if (config.leaseBackend === 'kubernetes') {
    return {
      replicaLease: KubernetesLeaser.fromEnvironment(kubernetesLeaseName(config.cluster, 'leader'), { requestTimeoutMs: leaseRequestTimeoutMs(config.leaseTtlMs, config.leaseRenewMs) }),
      monitorLease: KubernetesLeaser.fromEnvironment(kubernetesLeaseName(config.cluster, 'monitor'), { requestTimeoutMs: leaseRequestTimeoutMs(config.leaseTtlMs, config.leaseRenewMs) }),
    };
  }
  const bucket = `flotilla-${config.cluster}`;
  return {
    replicaLease: await openWhenReady(() => NatsKvLeaser.open(nc, bucket, REPLICA_LEASE_KEY), leaseStoreRetry(log)),
    monitorLease: await openWhenReady(() => NatsKvLeaser.open(nc, bucket, MONITOR_LEASE_KEY), leaseStoreRetry(log)),
  };
}

function safeType(reply: Uint8Array): string {
  try {
    const m = decodeEnvelope(reply);
    return m.type === 'error' ? `error ${JSON.stringify(m.error)}` : m.type;
  } catch (err) {
    return `undecodable: ${(err as Error).message}`;
  }
}

main().catch((err) => {
  if (err instanceof ConfigError) process.stderr.write(`${err.message}\n`);
  else process.stderr.write(`monitor failed to start: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
