import * as path from 'node:path';
import { ClusterFile, clusterFilePath, isAlive, readClusterFile } from '@flotilla/local-cluster';
import { CliError } from '../gateway-client';
import { Io } from '../io';

/** What `flotilla chaos <action>` does to the process. */
export const CHAOS_SIGNALS = {
  /** Crash it (kill -9); the supervisor of `flotilla up` starts it again, as Kubernetes would. */
  kill: 'SIGKILL',
  /** Freeze it (SIGSTOP): connections stay open, it stops heartbeating and answering. */
  pause: 'SIGSTOP',
  /** Continue a paused process (SIGCONT). */
  resume: 'SIGCONT',
} as const satisfies Record<string, NodeJS.Signals>;
export type ChaosAction = keyof typeof CHAOS_SIGNALS;
export const CHAOS_ACTIONS = Object.keys(CHAOS_SIGNALS) as ChaosAction[];

export interface ChaosOptions {
  action: ChaosAction;
  node: string;
  dataDir: string;
}

/** How signals are sent; injected so specs send none. */
export type SignalSender = (pid: number, signal: NodeJS.Signals) => void;

/**
 * Sends to the whole process group (every supervised child leads its own, so helpers it spawned
 * get the signal too), falling back to the pid alone.
 */
export const signalProcessGroup: SignalSender = (pid, signal) => {
  try {
    process.kill(-pid, signal);
  } catch {
    process.kill(pid, signal);
  }
};

/**
 * The pid to signal for `node` according to the cluster file of `dataDir`; throws a CliError that
 * says what to do when there is no cluster, no such process, or it is not running.
 */
export function chaosTarget(file: ClusterFile | undefined, options: ChaosOptions, alive: (pid: number) => boolean = isAlive): number {
  const where = path.resolve(options.dataDir);
  if (!file) throw new CliError('NO_CLUSTER', `no local cluster in ${where} (no ${clusterFilePath(where)}); start one with \`flotilla up --data-dir ${options.dataDir}\``);
  if (!alive(file.supervisorPid)) {
    throw new CliError('NO_CLUSTER', `the local cluster in ${where} is not running (its supervisor, pid ${file.supervisorPid}, is gone)`);
  }
  const proc = file.processes.find((p) => p.name === options.node);
  if (!proc) {
    throw new CliError('UNKNOWN_NODE', `no process named "${options.node}" in ${where} (have: ${file.processes.map((p) => p.name).join(', ')})`);
  }
  if (proc.pid === null) throw new CliError('NOT_RUNNING', `${options.node} is not running (state ${proc.state}); try again in a moment`);
  return proc.pid;
}

/** What was done, in one line. */
export function chaosLine(options: ChaosOptions, pid: number): string {
  const signal = CHAOS_SIGNALS[options.action];
  switch (options.action) {
    case 'kill':
      return (
        `chaos: ${options.node} (pid ${pid}) killed with ${signal}; the supervisor starts it again. Watch: flotilla status` +
        // A leader restarted before its lease ran out simply takes its lease back: no failover to watch.
        (options.node.startsWith('replica-') ? `\n(a leader back within its lease TTL leads again; to watch a failover: flotilla chaos pause ${options.node}, wait 3 s, resume)` : '')
      );
    case 'pause':
      return `chaos: ${options.node} (pid ${pid}) paused with ${signal}: it stops heartbeating. Continue it: flotilla chaos resume ${options.node}`;
    case 'resume':
      return `chaos: ${options.node} (pid ${pid}) resumed with ${signal}`;
  }
}

/** `flotilla chaos kill|pause|resume NODE`: a fault on one process of the local cluster. */
export async function runChaos(options: ChaosOptions, io: Io, send: SignalSender = signalProcessGroup): Promise<number> {
  const pid = chaosTarget(readClusterFile(path.resolve(options.dataDir)), options);
  send(pid, CHAOS_SIGNALS[options.action]);
  io.out(chaosLine(options, pid));
  return 0;
}
