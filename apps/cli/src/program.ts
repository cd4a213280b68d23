/**
 * The `flotilla` command line: argument parsing only. Each command's work is an injected handler,
 * so specs check parsing without starting processes or sending requests.
 */
import { REPLICATION_MODES } from '@flotilla/config';
import { DEFAULT_GATEWAY_PORT, DEFAULT_REPLICAS, MAX_REPLICAS } from '@flotilla/local-cluster';
import { Command, InvalidArgumentError, Option } from 'commander';
import { CHAOS_ACTIONS, ChaosAction, ChaosOptions } from './commands/chaos';
import { DiscardedOptions } from './commands/discarded';
import { SqlOptions } from './commands/sql';
import { StatusOptions } from './commands/status';
import { SwitchoverOptions } from './commands/switchover';
import { ModeOptions } from './commands/mode';
import { UpOptions } from './commands/up';
import { gatewayUrlOf } from './gateway-client';

/** Default data directory of `flotilla up`. */
export const DEFAULT_DATA_DIR = './.flotilla';
const CLUSTER_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export interface CliHandlers {
  up(options: UpOptions): Promise<number>;
  status(options: StatusOptions): Promise<number>;
  sql(sql: string, options: SqlOptions): Promise<number>;
  switchover(options: SwitchoverOptions): Promise<number>;
  mode(options: ModeOptions): Promise<number>;
  chaos(options: ChaosOptions): Promise<number>;
  discarded(options: DiscardedOptions): Promise<number>;
}

const NODE_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

function nodeName(value: string): string {
  if (!NODE_NAME.test(value)) throw new InvalidArgumentError('a process name from the cluster, e.g. replica-0, monitor-1, gateway, nats');
  return value;
}

function intIn(min: number, max: number, what: string) {
  return (value: string): number => {
    if (!/^\d+$/.test(value.trim())) throw new InvalidArgumentError(`${what} must be an integer from ${min} to ${max}`);
    const n = Number(value);
    if (n < min || n > max) throw new InvalidArgumentError(`${what} must be an integer from ${min} to ${max}`);
    return n;
  };
}

function decimalLsn(value: string): string {
  if (!/^(0|[1-9][0-9]{0,18})$/.test(value.trim())) throw new InvalidArgumentError('--min-lsn must be a decimal LSN, as answers carry it (e.g. "1042")');
  return value.trim();
}

function clusterName(value: string): string {
  if (!CLUSTER_NAME.test(value)) throw new InvalidArgumentError('lower-case letters, digits and dashes, at most 63, e.g. "flotilla"');
  return value;
}

function natsUrl(value: string): string {
  if (!/^(nats|tls):\/\/.+/.test(value)) throw new InvalidArgumentError('a nats:// or tls:// URL, e.g. nats://127.0.0.1:4222');
  return value;
}

function jsonParams(value: string): unknown[] | Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new InvalidArgumentError('a JSON array (positional) or object (named), e.g. \'[1, "a"]\'');
  }
  if (typeof parsed !== 'object' || parsed === null) throw new InvalidArgumentError('a JSON array or object');
  return parsed as unknown[] | Record<string, unknown>;
}

/**
 * The program; `handlers` receive parsed, validated options and return the exit code, which
 * `onExit` receives. Parse errors go through commander's own output and exit code (1).
 */
export function buildProgram(handlers: CliHandlers, onExit: (code: number) => void, env: NodeJS.ProcessEnv = process.env): Command {
  const program = new Command('flotilla')
    .description('Flotilla: a replicated SQL database (leader-based replication over SQLite)')
    .showHelpAfterError('(add --help for usage)')
    // Every command inherits this: `flotilla sql "DELETE FROM t" WHERE id=5` (a quoting slip) is an
    // error, not an unqualified DELETE of the first argument.
    .allowExcessArguments(false);

  program
    .command('up')
    .description('run a local cluster (nats-server, replicas, gateway) in the foreground; Ctrl-C stops it all')
    .addOption(new Option('--replicas <n>', 'number of replicas').default(DEFAULT_REPLICAS).argParser(intIn(1, MAX_REPLICAS, '--replicas')))
    .addOption(new Option('--port <port>', 'gateway HTTP port (0 = any free port)').default(DEFAULT_GATEWAY_PORT).argParser(intIn(0, 65535, '--port')))
    .option('--data-dir <dir>', 'where replica data, logs and cluster.json go', DEFAULT_DATA_DIR)
    .addOption(new Option('--nats <url>', 'use this NATS server instead of starting one').argParser(natsUrl))
    .option('--no-restart', 'do not restart processes that die')
    .addOption(new Option('--mode <mode>', 'replication mode').choices(REPLICATION_MODES))
    .addOption(new Option('--cluster <name>', 'cluster name').default('flotilla').argParser(clusterName))
    .addOption(new Option('--log-level <level>', 'supervisor log level').default('info').choices(['debug', 'info', 'warn', 'error', 'silent']))
    .action(async (o: { replicas: number; port: number; dataDir: string; nats?: string; restart: boolean; mode?: string; cluster: string; logLevel: string }) => {
      onExit(await handlers.up({ replicas: o.replicas, port: o.port, dataDir: o.dataDir, nats: o.nats, restart: o.restart, mode: o.mode, cluster: o.cluster, logLevel: o.logLevel }));
    });

  program
    .command('status')
    .description('show the cluster: roles, epochs, positions, lag, health (GET /v1/cluster)')
    .option('--gateway <url>', 'gateway URL (default $FLOTILLA_GATEWAY_URL or http://127.0.0.1:8080)')
    .option('--json', 'print the raw JSON', false)
    .action(async (o: { gateway?: string; json: boolean }) => {
      onExit(await handlers.status({ gateway: gatewayUrlOf(o.gateway, env), json: o.json }));
    });

  program
    .command('sql')
    .description('run one SQL statement: reads (SELECT/WITH/PRAGMA/EXPLAIN/VALUES) via /v1/query, the rest via /v1/execute')
    .argument('<sql>', 'the statement, quoted')
    .option('--gateway <url>', 'gateway URL (default $FLOTILLA_GATEWAY_URL or http://127.0.0.1:8080)')
    .option('--json', 'print the raw JSON answer', false)
    .addOption(new Option('--params <json>', 'parameters as a JSON array or object').argParser(jsonParams))
    .addOption(new Option('--consistency <level>', 'read consistency').choices(['strong', 'any', 'read-your-writes', 'bounded']))
    .addOption(new Option('--max-lag-ms <ms>', 'with --consistency bounded: the largest lag of the replica that answers').argParser(intIn(0, 3_600_000, '--max-lag-ms')))
    .addOption(new Option('--min-lsn <lsn>', 'the LSN the answer must reflect at least (read-your-writes, monotonic reads)').argParser(decimalLsn))
    .addOption(new Option('--min-epoch <epoch>', 'with --min-lsn: the epoch of that write; refused (STALE_EPOCH) if the write was lost in a failover').argParser(intIn(0, Number.MAX_SAFE_INTEGER, '--min-epoch')))
    .addOption(new Option('--read', 'send to /v1/query whatever the statement looks like').conflicts('write'))
    .option('--write', 'send to /v1/execute whatever the statement looks like')
    .action(async (sql: string, o: { gateway?: string; json: boolean; params?: unknown[] | Record<string, unknown>; consistency?: string; maxLagMs?: number; minLsn?: string; minEpoch?: number; read?: boolean; write?: boolean }) => {
      const options: SqlOptions = { gateway: gatewayUrlOf(o.gateway, env), json: o.json };
      if (o.params !== undefined) options.params = o.params;
      if (o.consistency) options.consistency = o.consistency;
      if (o.maxLagMs !== undefined) options.maxLagMs = o.maxLagMs;
      if (o.minLsn !== undefined) options.minLsn = o.minLsn;
      if (o.minEpoch !== undefined) options.minEpoch = o.minEpoch;
      if (o.read) options.force = 'read';
      if (o.write) options.force = 'write';
      onExit(await handlers.sql(sql, options));
    });

  program
    .command('switchover')
    .description('planned leader change with no data loss: the leader stops writes, waits for the target, hands over')
    .requiredOption('--to <node>', 'the replica to lead next, e.g. replica-1')
    .option('--gateway <url>', 'gateway URL (default $FLOTILLA_GATEWAY_URL or http://127.0.0.1:8080)')
    .option('--json', 'print the raw JSON answer', false)
    .action(async (o: { to: string; gateway?: string; json: boolean }) => {
      onExit(await handlers.switchover({ to: o.to, gateway: gatewayUrlOf(o.gateway, env), json: o.json }));
    });

  program
    .command('mode')
    .description('change the replication mode at run time, cluster-wide (recorded in the log: survives failover and restarts)')
    .option('--mode <mode>', 'async, semi-sync or sync', (v: string) => {
      if (!['async', 'semi-sync', 'sync'].includes(v)) throw new InvalidArgumentError('one of async, semi-sync, sync');
      return v;
    })
    .option('--sync-followers <n>', 'followers that must flush each write in semi-sync mode', intIn(1, 64, 'sync followers'))
    .option('--sync-policy <policy>', 'block or degrade when no follower can be synchronous', (v: string) => {
      if (!['block', 'degrade'].includes(v)) throw new InvalidArgumentError('one of block, degrade');
      return v;
    })
    .option('--sync-timeout-ms <ms>', 'how long a write waits for sync followers', intIn(10, 600_000, 'sync timeout'))
    .option('--gateway <url>', 'gateway URL (default $FLOTILLA_GATEWAY_URL or http://127.0.0.1:8080)')
    .option('--json', 'print the raw JSON answer', false)
    .action(async (o: { mode?: string; syncFollowers?: number; syncPolicy?: string; syncTimeoutMs?: number; gateway?: string; json: boolean }) => {
      onExit(await handlers.mode({ ...o, gateway: gatewayUrlOf(o.gateway, env) }));
    });

  program
    .command('chaos')
    .description('inject a fault into one process of the local cluster (see cluster.json): kill = SIGKILL, pause = SIGSTOP, resume = SIGCONT')
    .argument('<action>', `one of ${CHAOS_ACTIONS.join(', ')}`, (value: string) => {
      if (!(CHAOS_ACTIONS as string[]).includes(value)) throw new InvalidArgumentError(`one of ${CHAOS_ACTIONS.join(', ')}`);
      return value as ChaosAction;
    })
    .argument('<node>', 'process name, e.g. replica-0 (see `flotilla status`)', nodeName)
    .option('--data-dir <dir>', 'data dir of the `flotilla up` cluster', DEFAULT_DATA_DIR)
    .action(async (action: ChaosAction, node: string, o: { dataDir: string }) => {
      onExit(await handlers.chaos({ action, node, dataDir: o.dataDir }));
    });

  program
    .command('discarded')
    .description('transactions that replicas undid when they rewound after a failover (GET /v1/admin/discarded)')
    .option('--gateway <url>', 'gateway URL (default $FLOTILLA_GATEWAY_URL or http://127.0.0.1:8080)')
    .option('--json', 'print the raw JSON', false)
    .action(async (o: { gateway?: string; json: boolean }) => {
      onExit(await handlers.discarded({ gateway: gatewayUrlOf(o.gateway, env), json: o.json }));
    });

  return program;
}
