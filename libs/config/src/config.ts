/**
 * One validated configuration schema for every Flotilla process. The same names are used as CLI
 * flags (`--sync-timeout-ms`), environment variables (`FLOTILLA_SYNC_TIMEOUT_MS`) and Helm values
 * (`syncTimeoutMs`). {@link loadConfig} validates once and names every bad variable.
 */
import 'reflect-metadata';
import { plainToInstance, Transform } from 'class-transformer';
import { IsIn, IsInt, IsOptional, IsString, Matches, Max, Min, validateSync } from 'class-validator';

export const REPLICATION_MODES = ['async', 'semi-sync', 'sync'] as const;
export type ReplicationMode = (typeof REPLICATION_MODES)[number];
export const SYNC_POLICIES = ['block', 'degrade'] as const;
export type SyncPolicy = (typeof SYNC_POLICIES)[number];
export const LEASE_BACKENDS = ['nats-kv', 'kubernetes'] as const;
export type LeaseBackend = (typeof LEASE_BACKENDS)[number];

const toInt = ({ value }: { value: unknown }) => (typeof value === 'string' && value.trim() !== '' ? Number(value) : value);

/** Defaults, each with its unit and why. */
export const DEFAULTS = {
  cluster: 'flotilla',
  natsUrl: 'nats://127.0.0.1:4222',
  dataDir: './.flotilla/data',
  httpPort: 0,
  /**
   * Replicas: the port of the replica's own public REST API (the gateway's API, served in the
   * replica: writes run here without a NATS hop while it leads, and go to the leader otherwise).
   * 0: not served. The gateway ignores it.
   */
  apiPort: 0,
  mode: 'async' as ReplicationMode,
  syncFollowers: 1,
  /** How long a write waits for sync followers before another is made sync / the policy applies. */
  syncTimeoutMs: 2000,
  syncPolicy: 'block' as SyncPolicy,
  leaseBackend: 'nats-kv' as LeaseBackend,
  /**
   * Lease time to live: a dead leader's lease can be handed to another node only after this long,
   * so it bounds failover time from below. Too short: a GC pause or a slow disk deposes a healthy
   * leader; too long: a longer outage when the leader really dies.
   */
  leaseTtlMs: 1500,
  /** How often the leader renews its lease (at most half of leaseTtlMs, so one lost renewal is harmless). */
  leaseRenewMs: 300,
  /** The monitor calls a leader dead after this long without a heartbeat (and with its lease run out). */
  failureTimeoutMs: 1000,
  /**
   * Longest the SQL of one request may run on a replica (a write's statements on the leader, a
   * query anywhere) before SQLite stops it (400 STATEMENT_TIMEOUT, nothing applied). SQLite runs on
   * the replica's event loop: a leader held longer than its lease allows would be failed over. 0: none.
   * Must be below leaseTtlMs − safety margin − leaseRenewMs; when not set, a lease too short for
   * 500 ms gets 60% of that budget.
   */
  statementTimeoutMs: 500,
  /** A follower further behind than this many LSNs (of the last leader position seen) is never promoted. */
  maxLagOnFailover: 10_000,
  /** How often the monitor evaluates the cluster. */
  monitorIntervalMs: 100,
  heartbeatIntervalMs: 250,
  /** Log entries kept after every follower has them, at most (older ones are dropped first). */
  logRetentionEntries: 100_000,
  /** Bytes of log kept at most, whatever followers need: a follower further behind is re-seeded. */
  logRetentionBytes: 256 * 1024 * 1024,
  /** Age of log entries kept at most, whatever followers need. */
  logRetentionMs: 24 * 60 * 60 * 1000,
  snapshotChunkBytes: 960 * 1024,
  /**
   * Under load, change-stream entries no write waits for (async followers) are held up to this
   * many ms and published together; a group after a quiet spell (no commit for this long) goes at
   * once. Up to this much more async lag, for fewer messages (each costs every follower a wake-up,
   * a transaction and an ack). 0: every group commit is published at once.
   */
  streamBatchMs: 2,
  /** Largest request body the gateway accepts. */
  maxBodyBytes: 1024 * 1024,
  /** How long read-your-writes waits for a follower before falling back to the leader. */
  readWaitMs: 500,
  requestTimeoutMs: 5000,
  logLevel: 'info',
};

export class FlotillaConfig {
  @IsString() @Matches(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/)
  cluster: string = DEFAULTS.cluster;

  /** Name of this node (replica pod name); required for replicas. */
  @IsOptional() @IsString() @Matches(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/)
  node?: string;

  @IsString() @Matches(/^(nats|tls):\/\/.+/)
  natsUrl: string = DEFAULTS.natsUrl;

  @IsString()
  dataDir: string = DEFAULTS.dataDir;

  @Transform(toInt) @IsInt() @Min(0) @Max(65535)
  httpPort: number = DEFAULTS.httpPort;

  @IsString()
  httpHost = '127.0.0.1';

  @Transform(toInt) @IsInt() @Min(0) @Max(65535)
  apiPort: number = DEFAULTS.apiPort;

  @IsIn(REPLICATION_MODES)
  mode: ReplicationMode = DEFAULTS.mode;

  @Transform(toInt) @IsInt() @Min(1) @Max(64)
  syncFollowers: number = DEFAULTS.syncFollowers;

  @Transform(toInt) @IsInt() @Min(10) @Max(600_000)
  syncTimeoutMs: number = DEFAULTS.syncTimeoutMs;

  @IsIn(SYNC_POLICIES)
  syncPolicy: SyncPolicy = DEFAULTS.syncPolicy;

  @IsIn(LEASE_BACKENDS)
  leaseBackend: LeaseBackend = DEFAULTS.leaseBackend;

  @Transform(toInt) @IsInt() @Min(200) @Max(600_000)
  leaseTtlMs: number = DEFAULTS.leaseTtlMs;

  @Transform(toInt) @IsInt() @Min(50) @Max(60_000)
  leaseRenewMs: number = DEFAULTS.leaseRenewMs;

  @Transform(toInt) @IsInt() @Min(100) @Max(600_000)
  failureTimeoutMs: number = DEFAULTS.failureTimeoutMs;

  @Transform(toInt) @IsInt() @Min(0)
  maxLagOnFailover: number = DEFAULTS.maxLagOnFailover;

  @Transform(toInt) @IsInt() @Min(0) @Max(600_000)
  statementTimeoutMs: number = DEFAULTS.statementTimeoutMs;

  @Transform(toInt) @IsInt() @Min(10) @Max(60_000)
  monitorIntervalMs: number = DEFAULTS.monitorIntervalMs;

  @Transform(toInt) @IsInt() @Min(20) @Max(60_000)
  heartbeatIntervalMs: number = DEFAULTS.heartbeatIntervalMs;

  @Transform(toInt) @IsInt() @Min(10)
  logRetentionEntries: number = DEFAULTS.logRetentionEntries;

  @Transform(toInt) @IsInt() @Min(1024)
  logRetentionBytes: number = DEFAULTS.logRetentionBytes;

  @Transform(toInt) @IsInt() @Min(1000)
  logRetentionMs: number = DEFAULTS.logRetentionMs;

  @Transform(toInt) @IsInt() @Min(4096) @Max(1024 * 1024 - 4096)
  snapshotChunkBytes: number = DEFAULTS.snapshotChunkBytes;

  @Transform(toInt) @IsInt() @Min(0) @Max(1000)
  streamBatchMs: number = DEFAULTS.streamBatchMs;

  @Transform(toInt) @IsInt() @Min(1024) @Max(64 * 1024 * 1024)
  maxBodyBytes: number = DEFAULTS.maxBodyBytes;

  @Transform(toInt) @IsInt() @Min(0) @Max(60_000)
  readWaitMs: number = DEFAULTS.readWaitMs;

  @Transform(toInt) @IsInt() @Min(100) @Max(600_000)
  requestTimeoutMs: number = DEFAULTS.requestTimeoutMs;

  @IsIn(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'])
  logLevel: string = DEFAULTS.logLevel;
}

/**
 * How long before its lease could expire for others a leader stops counting itself valid: covers
 * clock-rate differences and the time a renewal takes to land (replica and monitor alike).
 */
/** Shortest statementTimeoutMs but 0 (none): several ticks of the per-turn SQL clock (libs/storage statement-guard.ts, 20 ms). */
export const STATEMENT_TIMEOUT_MIN_MS = 50;
/** The SQL of one event-loop turn may run statementTimeoutMs + one tick of that clock (SQL_TURN_TICK_MS). */
export const STATEMENT_TURN_SLACK_MS = 20;

export function leaseSafetyMarginMs(leaseTtlMs: number): number {
  return Math.max(200, Math.round(leaseTtlMs / 5));
}

/**
 * Bound of one request to the lease store: short enough that a hung renewal is abandoned and
 * retried while the leader is still valid (a renewal keeps it valid for TTL - margin), never more
 * than 2 s. With the chart's TTL 3000 / renew 500: 800 ms; locally (1500 / 300): 400 ms.
 */
export function leaseRequestTimeoutMs(leaseTtlMs: number, leaseRenewMs: number): number {
  return Math.max(100, Math.min(2000, 2 * leaseRenewMs, Math.floor((leaseTtlMs - leaseSafetyMarginMs(leaseTtlMs)) / 3)));
}

/** A configuration that failed validation; `problems` names every bad setting. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
  }
}

/** `syncTimeoutMs` → `FLOTILLA_SYNC_TIMEOUT_MS`. */
export function envNameOf(key: string): string {
  return 'FLOTILLA_' + key.replace(/([A-Z])/g, '_$1').toUpperCase();
}

/** `syncTimeoutMs` → `--sync-timeout-ms`. */
export function flagNameOf(key: string): string {
  return '--' + key.replace(/([A-Z])/g, '-$1').toLowerCase();
}

/**
 * Settings given as flags (`--sync-timeout-ms 500` or `--sync-timeout-ms=500`), for
 * {@link loadConfig}'s overrides: they win over the environment. A word that is not a flag, or a
 * flag without a value, is refused (an unknown name is refused by loadConfig, naming it).
 */
export function overridesFromArgv(argv: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const m = /^--([a-z][a-z0-9-]*)(?:=(.*))?$/.exec(arg);
    if (!m) throw new ConfigError([`unexpected argument ${JSON.stringify(arg)}: settings are flags such as ${flagNameOf('syncTimeoutMs')} 2000`]);
    const key = m[1].replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
    let value = m[2];
    if (value === undefined) {
      value = argv[i + 1];
      if (value === undefined || value.startsWith('--')) throw new ConfigError([`${arg} needs a value`]);
      i++;
    }
    out[key] = value;
  }
  return out;
}

/** Every setting name of the schema. */
export function configKeys(): string[] {
  return Object.keys(new FlotillaConfig());
}

/**
 * Builds the configuration from environment variables (`FLOTILLA_*`) overridden by `overrides`
 * (already-parsed flags), validates it once, and throws {@link ConfigError} naming every bad value.
 */
export function loadConfig(overrides: Record<string, unknown> = {}, env: NodeJS.ProcessEnv = process.env): FlotillaConfig {
  const plain: Record<string, unknown> = {};
  const keys = new Set([...configKeys(), 'node']);
  for (const key of keys) {
    const v = env[envNameOf(key)];
    if (v !== undefined) plain[key] = v;
  }
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) continue;
    if (!keys.has(k)) throw new ConfigError([`unknown setting "${k}"`]);
    plain[k] = v;
  }
  const config = plainToInstance(FlotillaConfig, plain);
  const errors = validateSync(config, { whitelist: false, forbidUnknownValues: true });
  const problems = errors.map((e) => {
    const how = Object.values(e.constraints ?? {}).join('; ');
    // The value as given (a string from the environment or a flag), not as the transform left it.
    return `${e.property} (${envNameOf(e.property)}=${JSON.stringify(plain[e.property] ?? e.value)}): ${how}`;
  });
  if (config.leaseRenewMs * 2 > config.leaseTtlMs) {
    problems.push(`leaseRenewMs (${config.leaseRenewMs}) must be at most half of leaseTtlMs (${config.leaseTtlMs})`);
  } else {
    // A renewal makes the leader valid for TTL - margin: that must outlast one missed renewal, or
    // the leader refuses writes part of the time (and a monitor's own lease flaps).
    const validMs = config.leaseTtlMs - leaseSafetyMarginMs(config.leaseTtlMs);
    if (validMs < 2 * config.leaseRenewMs) {
      problems.push(
        `leaseTtlMs (${config.leaseTtlMs}) is too short for leaseRenewMs (${config.leaseRenewMs}): a renewal keeps a leader valid for ` +
          `${validMs} ms (TTL minus a safety margin of ${leaseSafetyMarginMs(config.leaseTtlMs)} ms), which must cover two renewal intervals`,
      );
    }
  }
  {
    // A statement may start just before a renewal is due; it must end while the last renewal
    // still holds, or the leader running it is deposed by its own request.
    const budgetMs = config.leaseTtlMs - leaseSafetyMarginMs(config.leaseTtlMs) - config.leaseRenewMs;
    // Not set: the default, cut to fit a shorter lease.
    if (plain.statementTimeoutMs === undefined) {
      // A lease too short for even the shortest deadline (TTL of a few hundred ms): none.
      const fit = Math.min(DEFAULTS.statementTimeoutMs, Math.floor(budgetMs * 0.6));
      config.statementTimeoutMs = fit >= STATEMENT_TIMEOUT_MIN_MS && fit + STATEMENT_TURN_SLACK_MS < budgetMs ? fit : 0;
    } else if (config.statementTimeoutMs > 0 && config.statementTimeoutMs < STATEMENT_TIMEOUT_MIN_MS) {
      problems.push(
        `statementTimeoutMs (${config.statementTimeoutMs}) must be 0 (no deadline) or at least ${STATEMENT_TIMEOUT_MIN_MS} ms: ` +
          'shorter, the event loop timer that counts SQL time per turn is coarser than the deadline and requests would be refused as if the replica were busy',
      );
    } else if (config.statementTimeoutMs > 0 && config.statementTimeoutMs + STATEMENT_TURN_SLACK_MS >= budgetMs) {
      problems.push(
        `statementTimeoutMs (${config.statementTimeoutMs}) must be below ${budgetMs - STATEMENT_TURN_SLACK_MS} ms (leaseTtlMs ${config.leaseTtlMs} minus its safety margin ` +
          `${leaseSafetyMarginMs(config.leaseTtlMs)} minus leaseRenewMs ${config.leaseRenewMs} minus ${STATEMENT_TURN_SLACK_MS} ms of the per-turn SQL clock): ` +
          'a leader held longer by its requests can lose its lease; raise leaseTtlMs for longer statements, or set 0 for no deadline at that risk',
      );
    }
  }
  if (config.syncTimeoutMs >= config.requestTimeoutMs) {
    problems.push(
      `syncTimeoutMs (${config.syncTimeoutMs}) must be below requestTimeoutMs (${config.requestTimeoutMs}): ` +
        'otherwise the gateway gives up first and a semi-sync stall reads as "no leader answered" instead of NOT_ENOUGH_REPLICAS',
    );
  }
  if (config.syncTimeoutMs < 2 * config.heartbeatIntervalMs) {
    problems.push(
      `syncTimeoutMs (${config.syncTimeoutMs}) must be at least twice heartbeatIntervalMs (${config.heartbeatIntervalMs}): ` +
        'an idle follower acks once per heartbeat, and would be taken for gone between two (the sync set flapped)',
    );
  }
  if (config.failureTimeoutMs < 2 * config.heartbeatIntervalMs) {
    problems.push(
      `failureTimeoutMs (${config.failureTimeoutMs}) must be at least twice heartbeatIntervalMs (${config.heartbeatIntervalMs}): ` +
        'otherwise healthy nodes look silent between heartbeats and the failover choice goes by luck',
    );
  }
  if (config.apiPort > 0 && config.apiPort === config.httpPort) {
    problems.push(`apiPort (${envNameOf('apiPort')}) and httpPort (${envNameOf('httpPort')}) are both ${config.apiPort}: a replica serves two listeners, give them different ports`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}
