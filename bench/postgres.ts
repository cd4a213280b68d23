/**
 * A PostgreSQL 15 primary + 1 streaming standby on loopback, started by the benchmark itself from
 * Debian's binaries, as an unprivileged OS user (PostgreSQL refuses to run as root), in a temp dir
 * that is removed on stop. fsync stays on. The commit mode is switched between runs with
 * ALTER SYSTEM + pg_reload_conf(), and the switch is verified before a run starts.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Client as PgClient } from 'pg';
import { freePort } from '@flotilla/local-cluster';

/** Name the standby gives itself (application_name), as listed in synchronous_standby_names. */
export const STANDBY_NAME = 'standby1';
/** OS user the servers run as when we are root and `postgres` does not exist. */
const FALLBACK_USER = 'flotillabench';
/** How long the standby gets to reach the wanted sync state after a mode switch. */
const SYNC_STATE_TIMEOUT_MS = 30_000;

/** A PostgreSQL commit mode of the comparison. */
export interface PgMode {
  /** Label in tables. */
  label: string;
  synchronousCommit: 'off' | 'local' | 'on' | 'remote_apply';
  /** True: the standby is in synchronous_standby_names. */
  syncStandby: boolean;
}

export function findPgBin(): string {
  const candidates = ['/usr/lib/postgresql/15/bin', '/usr/local/bin', '/usr/bin'];
  for (const dir of candidates) {
    if (fs.existsSync(path.join(dir, 'pg_ctl')) && fs.existsSync(path.join(dir, 'initdb')) && fs.existsSync(path.join(dir, 'pg_basebackup'))) return dir;
  }
  throw new Error('PostgreSQL 15 binaries not found (pg_ctl, initdb, pg_basebackup): run `bash scripts/setup.sh --bench`');
}

function osUser(): string | undefined {
  if (process.getuid?.() !== 0) return undefined; // Not root: run as ourselves.
  for (const user of ['postgres', FALLBACK_USER]) {
    if (spawnSync('id', ['-u', user]).status === 0) return user;
  }
  execFileSync('useradd', ['-r', '-M', '-s', '/usr/sbin/nologin', FALLBACK_USER]);
  return FALLBACK_USER;
}

export class PostgresPair {
  readonly dir: string;
  readonly bin: string;
  readonly user?: string;
  primaryPort = 0;
  standbyPort = 0;
  version = '';
  private started: string[] = [];

  constructor() {
    this.bin = findPgBin();
    this.user = osUser();
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-bench-pg-'));
    fs.chmodSync(this.dir, 0o755);
    if (this.user) execFileSync('chown', [this.user, this.dir]);
  }

  private run(tool: string, args: string[]): string {
    const cmd = path.join(this.bin, tool);
    const [command, argv] = this.user ? ['runuser', ['-u', this.user, '--', cmd, ...args]] : [cmd, args];
    const r = spawnSync(command, argv, { cwd: this.dir, encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')} failed (${r.status}): ${r.stderr || r.stdout}`);
    return r.stdout;
  }

  private appendConf(dataDir: string, lines: string[]): void {
    fs.appendFileSync(path.join(dataDir, 'postgresql.conf'), `\n# flotilla bench\n${lines.join('\n')}\n`);
  }

  /** initdb, start the primary, pg_basebackup the standby, start it; resolves when it streams. */
  async start(): Promise<void> {
    const primary = path.join(this.dir, 'primary');
    const standby = path.join(this.dir, 'standby');
    this.primaryPort = await freePort();
    this.standbyPort = await freePort();
    this.version = this.run('postgres', ['--version']).trim();
    this.run('initdb', ['-D', primary, '-U', 'postgres', '-A', 'trust', '--no-instructions']);
    this.appendConf(primary, [
      `port = ${this.primaryPort}`,
      "listen_addresses = '127.0.0.1'",
      `unix_socket_directories = '${this.dir}'`,
      'fsync = on',
      'full_page_writes = on',
      'wal_level = replica',
      'max_wal_senders = 4',
      'max_connections = 200',
      'synchronous_commit = on',
      "synchronous_standby_names = ''",
    ]);
    this.pgCtl(primary, 'start');
    this.run('pg_basebackup', [
      '-D', standby, '-R', '-X', 'stream',
      '-d', `host=127.0.0.1 port=${this.primaryPort} user=postgres application_name=${STANDBY_NAME}`,
    ]);
    this.appendConf(standby, [`port = ${this.standbyPort}`, 'hot_standby = on']);
    this.pgCtl(standby, 'start');
    await this.withClient(async (c) => {
      await c.query('CREATE TABLE t(k bigint PRIMARY KEY, v text NOT NULL)');
      await this.waitFor(c, async () => (await c.query("SELECT count(*)::int AS n FROM pg_stat_replication WHERE state = 'streaming'")).rows[0].n === 1, 'the standby streaming');
    });
  }

  private pgCtl(dataDir: string, action: 'start' | 'stop'): void {
    if (action === 'start') {
      this.run('pg_ctl', ['-D', dataDir, '-l', path.join(this.dir, `${path.basename(dataDir)}.log`), '-w', '-t', '60', 'start']);
      this.started.push(dataDir);
    } else {
      this.run('pg_ctl', ['-D', dataDir, '-m', 'fast', '-w', '-t', '60', 'stop']);
    }
  }

  /** Connection parameters of the primary for pg clients. */
  get connection(): { host: string; port: number; user: string; database: string } {
    return { host: '127.0.0.1', port: this.primaryPort, user: 'postgres', database: 'postgres' };
  }

  async withClient<T>(fn: (c: PgClient) => Promise<T>): Promise<T> {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { Client } = require('pg') as typeof import('pg');
    const c = new Client(this.connection);
    await c.connect();
    try {
      return await fn(c);
    } finally {
      await c.end();
    }
  }

  private async waitFor(c: PgClient, cond: () => Promise<boolean>, what: string): Promise<void> {
    const deadline = Date.now() + SYNC_STATE_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (await cond()) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`PostgreSQL: timed out waiting for ${what}`);
  }

  /** Switches the commit mode server-wide and checks that new sessions see it. */
  async setMode(mode: PgMode): Promise<void> {
    await this.withClient(async (c) => {
      await c.query(`ALTER SYSTEM SET synchronous_commit = '${mode.synchronousCommit}'`);
      await c.query(`ALTER SYSTEM SET synchronous_standby_names = '${mode.syncStandby ? STANDBY_NAME : ''}'`);
      await c.query('SELECT pg_reload_conf()');
      await c.query('TRUNCATE t');
      await this.waitFor(c, async () => (await c.query("SELECT sync_state FROM pg_stat_replication WHERE state = 'streaming'")).rows[0]?.sync_state === (mode.syncStandby ? 'sync' : 'async'), `standby sync_state ${mode.syncStandby ? 'sync' : 'async'}`);
    });
    await this.withClient(async (c) => {
      const got = (await c.query('SHOW synchronous_commit')).rows[0].synchronous_commit as string;
      if (got !== mode.synchronousCommit) throw new Error(`PostgreSQL: synchronous_commit is ${got}, wanted ${mode.synchronousCommit}`);
    });
  }

  /** Stops both servers (standby first) and removes the temp dir. Idempotent; never throws. */
  stop(): void {
    for (const dataDir of this.started.reverse()) {
      try {
        this.pgCtl(dataDir, 'stop');
      } catch {
        try {
          this.run('pg_ctl', ['-D', dataDir, '-m', 'immediate', 'stop']);
        } catch {
          // Already down.
        }
      }
    }
    this.started = [];
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
