import { FlotillaConfig, loadConfig } from '@flotilla/config';
import { LocalCluster, LocalClusterOptions } from '@flotilla/local-cluster';
import { createLogger } from '@flotilla/logging';
import * as path from 'node:path';
import { Io } from '../io';

export interface UpOptions {
  replicas: number;
  port: number;
  dataDir: string;
  nats?: string;
  restart: boolean;
  mode?: string;
  cluster: string;
  logLevel: string;
}

/**
 * What is wrong with starting this cluster, before anything is spawned (null: nothing): the
 * settings every child would load (flags and FLOTILLA_* of this shell), and a sync mode that
 * needs more followers than there are. Otherwise every child exits 2 in a restart loop, and
 * `flotilla up` says so only when its wait for readiness gives up.
 */
export function upProblem(options: UpOptions, env: NodeJS.ProcessEnv): string | null {
  let config: FlotillaConfig;
  try {
    config = loadConfig(options.mode ? { mode: options.mode } : {}, env);
  } catch (err) {
    return (err as Error).message;
  }
  if (config.mode !== 'async' && config.syncFollowers >= options.replicas) {
    return `mode ${config.mode} needs syncFollowers (${config.syncFollowers}) < replicas (${options.replicas}): the leader is not its own follower; add replicas or use --mode async`;
  }
  return null;
}

/** LocalCluster options for `flotilla up` flags. */
export function clusterOptionsOf(options: UpOptions): LocalClusterOptions {
  const env: Record<string, string> = {};
  if (options.mode) env.FLOTILLA_MODE = options.mode;
  return {
    replicas: options.replicas,
    port: options.port,
    dataDir: path.resolve(options.dataDir),
    natsUrl: options.nats,
    restart: options.restart,
    cluster: options.cluster,
    env,
  };
}

/**
 * `flotilla up`: runs a local cluster in the foreground until SIGINT (Ctrl-C), SIGTERM or SIGHUP (the
 * terminal closed: the children, in sessions of their own, never get it themselves), then
 * stops every process (SIGTERM, SIGKILL after a grace period) and exits 0.
 */
export async function runUp(options: UpOptions, io: Io): Promise<number> {
  const problem = upProblem(options, process.env);
  if (problem !== null) {
    io.err(`flotilla up: ${problem}`);
    return 2;
  }
  const clusterOptions = clusterOptionsOf(options);
  const cluster = new LocalCluster({ ...clusterOptions, logger: createLogger({ app: 'flotilla-up', cluster: options.cluster }, options.logLevel) });
  let stopRequested: ((signal: string) => void) | undefined;
  const stopSignal = new Promise<string>((resolve) => (stopRequested = resolve));
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals === 1) stopRequested?.(signal);
    else io.err(`${signal} again: still stopping (processes that ignore SIGTERM get SIGKILL shortly)`);
  };
  // If this process dies anyway (a bug, an uncaught error), it takes its children with it.
  const onExit = () => cluster.killAllNow();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  process.on('exit', onExit);
  // Keeps the event loop alive even if every child exits and restart is off.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  try {
    const startOrSignal = await Promise.race([cluster.start().then(() => 'started'), stopSignal]);
    if (startOrSignal === 'started') {
      const logs = path.join(cluster.dataDir, 'logs');
      io.out(`flotilla: cluster "${cluster.clusterName}" with ${options.replicas} replica(s) starting`);
      io.out(`flotilla: gateway  ${cluster.gatewayUrl}   (try: flotilla status --gateway ${cluster.gatewayUrl})`);
      io.out(`flotilla: nats     ${cluster.natsUrl}`);
      // Each replica serves the same API; a write to the leader's runs in its process (no gateway hop).
      io.out(`flotilla: replica APIs  ${cluster.replicaNames.map((n) => `${n} ${cluster.apiUrl(n)}`).join('   ')}`);
      io.out(`flotilla: data     ${cluster.dataDir}   logs ${logs}   processes ${path.join(cluster.dataDir, 'cluster.json')}`);
      io.out('flotilla: press Ctrl-C to stop');
      cluster.waitUntilReady().then(
        () => io.out(`flotilla: ready at ${cluster.gatewayUrl}`),
        (e: Error) => io.err(`flotilla: warning: ${e.message}`),
      );
    }
    const signal = await stopSignal;
    io.out(`flotilla: ${signal}: stopping all processes`);
    await cluster.stop();
    io.out('flotilla: stopped');
    return 0;
  } catch (e) {
    await cluster.stop();
    throw e;
  } finally {
    clearInterval(keepAlive);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onSignal);
    process.off('exit', onExit);
  }
}
