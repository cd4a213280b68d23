import { ChaosOptions } from './commands/chaos';
import { DiscardedOptions } from './commands/discarded';
import { SqlOptions } from './commands/sql';
import { StatusOptions } from './commands/status';
import { SwitchoverOptions } from './commands/switchover';
import { UpOptions } from './commands/up';
import { ModeOptions } from './commands/mode';
import { buildProgram, CliHandlers } from './program';

/** Parses argv with recording handlers; commander errors come back instead of exiting. */
async function parse(args: string[], env: NodeJS.ProcessEnv = {}) {
  const calls: {
    up?: UpOptions;
    status?: StatusOptions;
    sql?: { sql: string; options: SqlOptions };
    switchover?: SwitchoverOptions;
    chaos?: ChaosOptions;
    discarded?: DiscardedOptions;
    mode?: ModeOptions;
  } = {};
  const handlers: CliHandlers = {
    up: async (o) => ((calls.up = o), 0),
    status: async (o) => ((calls.status = o), 0),
    sql: async (sql, options) => ((calls.sql = { sql, options }), 0),
    switchover: async (o) => ((calls.switchover = o), 0),
    chaos: async (o) => ((calls.chaos = o), 0),
    discarded: async (o) => ((calls.discarded = o), 0),
    mode: async (o) => ((calls.mode = o), 0),
  };
  const codes: number[] = [];
  const errors: string[] = [];
  const program = buildProgram(handlers, (code) => codes.push(code), env);
  program.exitOverride();
  for (const command of [program, ...program.commands]) {
    command.exitOverride();
    command.configureOutput({ writeErr: (s) => errors.push(s), writeOut: () => undefined });
  }
  let thrown: unknown;
  try {
    await program.parseAsync(['node', 'flotilla', ...args]);
  } catch (e) {
    thrown = e;
  }
  return { calls, codes, errors: errors.join(''), thrown };
}

describe('flotilla up', () => {
  it('has the documented defaults', async () => {
    const { calls } = await parse(['up']);
    expect(calls.up).toEqual({ replicas: 3, port: 8080, dataDir: './.flotilla', nats: undefined, restart: true, mode: undefined, cluster: 'flotilla', logLevel: 'info' });
  });

  it('parses every flag', async () => {
    const { calls, codes } = await parse(['up', '--replicas', '5', '--port', '9000', '--data-dir', '/tmp/x', '--nats', 'nats://127.0.0.1:4333', '--no-restart', '--mode', 'semi-sync', '--cluster', 'blue']);
    expect(calls.up).toEqual({ replicas: 5, port: 9000, dataDir: '/tmp/x', nats: 'nats://127.0.0.1:4333', restart: false, mode: 'semi-sync', cluster: 'blue', logLevel: 'info' });
    expect(codes).toEqual([0]);
  });

  it.each([
    [['--replicas', '0'], /--replicas must be an integer from 1 to 32/],
    [['--replicas', 'two'], /--replicas must be an integer/],
    [['--port', '70000'], /--port must be an integer from 0 to 65535/],
    [['--mode', 'fast'], /Allowed choices are async, semi-sync, sync/],
    [['--cluster', 'Bad_Name'], /lower-case letters/],
    [['--nats', 'localhost:4222'], /nats:\/\//],
  ])('rejects %j', async (args, message) => {
    const { calls, errors, thrown } = await parse(['up', ...args]);
    expect(calls.up).toBeUndefined();
    expect(thrown).toBeDefined();
    expect(errors).toMatch(message);
  });
});

describe('flotilla status', () => {
  it('uses the flag, else FLOTILLA_GATEWAY_URL, else localhost:8080', async () => {
    expect((await parse(['status', '--gateway', 'http://h:1/'])).calls.status).toEqual({ gateway: 'http://h:1', json: false });
    expect((await parse(['status', '--json'], { FLOTILLA_GATEWAY_URL: 'http://e:2' })).calls.status).toEqual({ gateway: 'http://e:2', json: true });
    expect((await parse(['status'])).calls.status?.gateway).toBe('http://127.0.0.1:8080');
  });
});

describe('flotilla sql', () => {
  it('passes the statement and options', async () => {
    const { calls } = await parse(['sql', 'SELECT * FROM t WHERE a = ?', '--params', '[1]', '--consistency', 'strong', '--gateway', 'http://g:3']);
    expect(calls.sql).toEqual({ sql: 'SELECT * FROM t WHERE a = ?', options: { gateway: 'http://g:3', json: false, params: [1], consistency: 'strong' } });
  });

  it('rejects parameters that are not a JSON array or object', async () => {
    const { calls, errors } = await parse(['sql', 'SELECT ?', '--params', '1']);
    expect(calls.sql).toBeUndefined();
    expect(errors).toMatch(/JSON array or object/);
  });

  it('refuses --read with --write', async () => {
    const { calls, errors } = await parse(['sql', 'SELECT 1', '--read', '--write']);
    expect(calls.sql).toBeUndefined();
    expect(errors).toMatch(/cannot be used with/);
  });

  it('requires the statement', async () => {
    const { errors } = await parse(['sql']);
    expect(errors).toMatch(/missing required argument 'sql'/);
  });

  it('passes --max-lag-ms and --min-lsn for bounded and read-your-writes reads, and refuses malformed ones', async () => {
    const { calls } = await parse(['sql', 'SELECT 1', '--consistency', 'bounded', '--max-lag-ms', '250', '--min-lsn', '1042']);
    expect(calls.sql).toEqual({ sql: 'SELECT 1', options: expect.objectContaining({ consistency: 'bounded', maxLagMs: 250, minLsn: '1042' }) });
    expect((await parse(['sql', 'SELECT 1', '--max-lag-ms', 'soon'])).errors).toMatch(/--max-lag-ms must be an integer/);
    expect((await parse(['sql', 'SELECT 1', '--min-lsn', '-3'])).errors).toMatch(/--min-lsn must be a decimal LSN/);
  });

  it('refuses words past the statement (a quoting slip would have run an unqualified DELETE)', async () => {
    const { calls, errors } = await parse(['sql', 'DELETE FROM accounts', 'WHERE', 'id=5']);
    expect(calls.sql).toBeUndefined();
    expect(errors).toMatch(/too many arguments/);
  });
});

describe('flotilla switchover', () => {
  it('requires --to', async () => {
    const { calls, errors } = await parse(['switchover']);
    expect(calls.switchover).toBeUndefined();
    expect(errors).toMatch(/required option '--to <node>'/);
  });

  it('passes the target', async () => {
    expect((await parse(['switchover', '--to', 'replica-1'])).calls.switchover).toEqual({ to: 'replica-1', gateway: 'http://127.0.0.1:8080', json: false });
  });
});

describe('flotilla chaos', () => {
  it('parses the action, the node and the data dir', async () => {
    expect((await parse(['chaos', 'kill', 'replica-0'])).calls.chaos).toEqual({ action: 'kill', node: 'replica-0', dataDir: './.flotilla' });
    expect((await parse(['chaos', 'pause', 'monitor-1', '--data-dir', '/tmp/c'])).calls.chaos).toEqual({ action: 'pause', node: 'monitor-1', dataDir: '/tmp/c' });
    expect((await parse(['chaos', 'resume', 'replica-2'])).calls.chaos?.action).toBe('resume');
  });

  it('refuses an unknown action or a malformed name', async () => {
    const bad = await parse(['chaos', 'explode', 'replica-0']);
    expect(bad.calls.chaos).toBeUndefined();
    expect(bad.errors).toMatch(/one of kill, pause, resume/);
    const name = await parse(['chaos', 'kill', 'Replica 0']);
    expect(name.calls.chaos).toBeUndefined();
    expect(name.errors).toMatch(/a process name from the cluster/);
  });
});

describe('flotilla discarded', () => {
  it('passes the gateway and --json', async () => {
    expect((await parse(['discarded', '--json', '--gateway', 'http://g:4'])).calls.discarded).toEqual({ gateway: 'http://g:4', json: true });
  });
});

describe('flotilla mode', () => {
  it('passes the settings given, and only those', async () => {
    const { calls, codes } = await parse(['mode', '--mode', 'semi-sync', '--sync-followers', '2', '--sync-policy', 'degrade', '--gateway', 'http://x:1']);
    expect(codes).toEqual([0]);
    expect(calls.mode).toMatchObject({ mode: 'semi-sync', syncFollowers: 2, syncPolicy: 'degrade', gateway: 'http://x:1' });
    expect(calls.mode?.syncTimeoutMs).toBeUndefined();
  });

  it('refuses an unknown mode or policy', async () => {
    expect((await parse(['mode', '--mode', 'eventual'])).errors).toMatch(/one of async, semi-sync, sync/);
    expect((await parse(['mode', '--sync-policy', 'hope'])).errors).toMatch(/one of block, degrade/);
    expect((await parse(['mode', '--sync-followers', '0'])).errors).toMatch(/integer from 1 to 64/);
  });
});
