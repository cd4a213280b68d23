/**
 * The replica process: one database node. Configured by FLOTILLA_* environment variables (see
 * libs/config). Wires the core (store, transport, lease keeper, replica node), a small HTTP
 * server for probes and metrics and, with apiPort, the public REST API (the gateway's, in this
 * process: writes run here while this node leads); all logic lives in libs/ and the gateway.
 */
import 'reflect-metadata';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NestFactory } from '@nestjs/core';
import { ConfigError, leaseRequestTimeoutMs, leaseSafetyMarginMs, loadConfig, overridesFromArgv } from '@flotilla/config';
import { KubernetesLeaser, kubernetesLeaseName, LeaseKeeper, Leaser, leaseStoreRetry, NatsKvLeaser, openWhenReady, PodRoleLabeler } from '@flotilla/election';
import type { Logger } from '@flotilla/logging';
import { createLogger, systemClock } from '@flotilla/logging';
import { subjectsFor } from '@flotilla/protocol';
import { Counters, removeInBackground, ReplicaNode, RoleContext } from '@flotilla/replication';
import { leftoverFiles, statementGuardUnavailable, Store } from '@flotilla/storage';
import { NatsTransport } from '@flotilla/transport';
import { ReplicaHttpModule } from './replica-http.module';

const VERSION = process.env.npm_package_version ?? '0.1.0';
/** Exit code of a replica that found itself unable to follow the log (it must not serve data). */
const EXIT_DIVERGED = 70;
/** Pause before retrying a pod role label that could not be written. */
const LABEL_RETRY_MS = 1000;
/** How long a leader shutting down waits for its switchover to a follower (drain included). */
const SHUTDOWN_HANDOFF_MS = 3000;

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(overridesFromArgv(process.argv.slice(2)), process.env);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(2);
  }
  if (!config.node) {
    process.stderr.write('FLOTILLA_NODE (the replica name) is required\n');
    process.exit(2);
  }
  const node = config.node;
  const log = createLogger({ app: 'replica', node, cluster: config.cluster }, config.logLevel);
  fs.mkdirSync(config.dataDir, { recursive: true });
  const dbFile = path.join(config.dataDir, 'db.sqlite');
  // What a seed or snapshot interrupted by a crash left behind; a seed starts over. Freed a step at
  // a time, in the background: a burst of freed blocks would stall this replica's first commits.
  const leftovers = leftoverFiles(dbFile);
  const store = Store.open(dbFile, { statementTimeoutMs: config.statementTimeoutMs });
  log.info('database opened', { file: dbFile, lsn: store.lastLsn, epoch: store.knownEpoch() });
  if (config.statementTimeoutMs > 0 && !store.statementDeadlines) {
    log.warn('statement deadlines are off: a request that runs for ever holds this replica', { why: statementGuardUnavailable() });
  }
  for (const file of leftovers) removeInBackground({ log, clock: systemClock }, file, 'a leftover file');

  const transport = await NatsTransport.connect({
    servers: config.natsUrl,
    name: `replica-${node}`,
    onStatus: (status, data) => log.info('nats connection', { status, data: typeof data === 'string' ? data : undefined }),
  });
  const ctx: RoleContext = {
    node,
    store,
    transport,
    subjects: subjectsFor(config.cluster),
    clock: systemClock,
    log,
    config,
    counters: new Counters(),
    fatal(err) {
      log.error('fatal: stopping so as not to serve wrong data', { err: err.message });
      process.exit(EXIT_DIVERGED);
    },
  };
  // Kubernetes: Lease <cluster>-leader in the pod's namespace, and the pod's role label kept current.
  const kubernetes = config.leaseBackend === 'kubernetes';
  const leaser: Leaser = kubernetes
    ? KubernetesLeaser.fromEnvironment(kubernetesLeaseName(config.cluster, 'leader'), { requestTimeoutMs: leaseRequestTimeoutMs(config.leaseTtlMs, config.leaseRenewMs) })
    : await openWhenReady(() => NatsKvLeaser.open(transport.nc, `flotilla-${config.cluster}`, 'leader'), leaseStoreRetry(log));
  const roleLabel = kubernetes ? roleLabelSync(PodRoleLabeler.fromEnvironment(node), log.child({ component: 'pod-label' })) : null;
  log.info('lease backend', { backend: leaser.kind });
  let replica: ReplicaNode | null = null;
  const keeper = new LeaseKeeper(
    leaser,
    systemClock,
    log.child({ component: 'lease' }),
    {
      node,
      ttlMs: config.leaseTtlMs,
      renewMs: config.leaseRenewMs,
      safetyMarginMs: leaseSafetyMarginMs(config.leaseTtlMs),
      knownEpoch: () => store.knownEpoch(),
      // Cut off from NATS, a leader can neither replicate nor be reached by the gateway: it lets
      // its lease lapse (its writes stop when the validity runs out) so that the monitor promotes a
      // follower. With the NATS KV backend renewals fail anyway; with the Kubernetes Lease they went
      // on through the API server, and gateway writes failed for as long as the cut lasted.
      mayHold: () => transport.connected,
    },
    (view) => {
      replica?.onLeadership(view);
      roleLabel?.set(view.isLeader ? 'leader' : 'follower');
    },
  );
  replica = new ReplicaNode(ctx, keeper, VERSION);
  replica.start();
  await keeper.start();
  roleLabel?.set(keeper.leadership.isLeader ? 'leader' : 'follower');

  const app = await NestFactory.create(ReplicaHttpModule.forNode(replica), { logger: false });
  await app.listen(config.httpPort, config.httpHost);
  log.info('http listening', { port: config.httpPort, host: config.httpHost });
  // The public REST API in the replica itself: writes run here while this node leads. Loaded only
  // when asked for (the gateway's module patches AsyncResource.bind process-wide when loaded).
  const api = config.apiPort > 0 ? await (await import('../../gateway/src/main')).startGateway({ ...config, httpPort: config.apiPort }, log.child({ component: 'api' }), { local: replica }) : null;

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info('shutting down', { signal });
    // Leading: a switchover to the most up-to-date follower first (a rolling restart loses
    // nothing), well within the pod's terminationGracePeriodSeconds (30 s). If that fails, the
    // lease is left to run out, not released: a released lease went to whichever replica grabbed
    // it first (lagging, seeding, even empty); an expired one goes to the monitor's choice.
    const wasLeader = keeper.leadership.isLeader;
    const to = await replica.handOffForShutdown(SHUTDOWN_HANDOFF_MS).catch(() => null);
    if (to) log.info('leadership handed over at shutdown', { to });
    else if (wasLeader) log.warn('no follower could take over at shutdown: the lease runs out and the monitor chooses the next leader');
    keeper.stop();
    roleLabel?.stop();
    await api?.stop().catch(() => undefined);
    await replica?.stop();
    await app.close().catch(() => undefined);
    await transport.close().catch(() => undefined);
    store.close();
    log.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

/**
 * Writes the latest role asked for to the pod label, one patch at a time; a failed patch is logged
 * and retried every LABEL_RETRY_MS until it lands or a newer role replaces it. Never throws.
 */
function roleLabelSync(labeler: PodRoleLabeler, log: Logger): { set(role: 'leader' | 'follower'): void; stop(): void } {
  let wanted: 'leader' | 'follower' | null = null;
  let busy = false;
  let stopped = false;
  let retry: NodeJS.Timeout | null = null;
  const push = async (): Promise<void> => {
    if (busy || stopped || wanted === null) return;
    busy = true;
    const role = wanted;
    try {
      const before = labeler.currentRole;
      await labeler.setRole(role);
      if (before !== role) log.info('pod role label set', { role });
    } catch (err) {
      log.warn('pod role label not set; retrying', { role, err: (err as Error).message, retryMs: LABEL_RETRY_MS });
      if (!retry && !stopped) retry = setTimeout(() => ((retry = null), void push()), LABEL_RETRY_MS);
      return;
    } finally {
      busy = false;
    }
    if (wanted !== role) void push();
  };
  return {
    set(role) {
      wanted = role;
      void push();
    },
    stop() {
      stopped = true;
      if (retry) clearTimeout(retry);
    },
  };
}

main().catch((err) => {
  if (err instanceof ConfigError) process.stderr.write(`${err.message}\n`);
  else process.stderr.write(`replica failed to start: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
