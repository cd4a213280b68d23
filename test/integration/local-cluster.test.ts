/**
 * LocalCluster and `flotilla up` with a real nats-server.
 *
 * Two tiers in one file:
 * - "supervisor": the supervision itself (cluster.json, restarts, pause, stop) with a stub in place of
 *   the Flotilla apps, so a failure here points at the supervisor, not at a replica.
 * - "with the real apps": 1 replica + gateway built by `npm run build` (dist/apps/<app>/src/main.js).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { ClusterFile, ClusterProcessInfo, isAlive, probeNats, readClusterFile } from '@flotilla/local-cluster';
import { freePort, httpJson, startLocalCluster, startNatsServer, stopAll, TcpProxy, tempDir, waitFor } from '@flotilla/testing';

jest.setTimeout(90_000);

const ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(ROOT, 'dist', 'apps', 'cli', 'src', 'main.js');

/**
 * A stand-in for replica/gateway/monitor: serves /healthz, /readyz and /env (its FLOTILLA_*
 * variables) on FLOTILLA_HTTP_PORT, logs a JSON line, exits 0 on SIGTERM.
 */
const STUB_APP = `
const http = require('node:http');
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('FLOTILLA_')));
const server = http.createServer((req, res) => {
  res.setHeader('content-type', 'application/json');
  // The gateway's /readyz names the leader it knows: the local cluster waits for one.
  res.end(JSON.stringify(req.url === '/env' ? env : { status: 'ok', node: env.FLOTILLA_NODE ?? null, leader: 'replica-0' }));
});
server.listen(Number(process.env.FLOTILLA_HTTP_PORT), '127.0.0.1', () => {
  console.log(JSON.stringify({ level: 'info', msg: 'stub listening', node: env.FLOTILLA_NODE, port: process.env.FLOTILLA_HTTP_PORT }));
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
`;

/** A fake repository root whose dist/apps/<app>/src/main.js are the stub (for the CLI, via FLOTILLA_ROOT). */
function stubRoot(): string {
  const root = tempDir('flotilla-stub-root-');
  fs.writeFileSync(path.join(root, 'package.json'), '{"name":"stub"}\n');
  for (const app of ['replica', 'gateway']) {
    const dir = path.join(root, 'dist', 'apps', app, 'src');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'main.js'), STUB_APP);
  }
  fs.mkdirSync(path.join(root, 'apps'));
  return root;
}

function processOf(file: ClusterFile | undefined, name: string): ClusterProcessInfo | undefined {
  return file?.processes.find((p) => p.name === name);
}

/** pids of cluster.json that are alive. */
function livePids(file: ClusterFile): number[] {
  return file.processes.map((p) => p.pid).filter((pid): pid is number => pid !== null && isAlive(pid));
}

/** True when `pid` is gone: signal 0 fails with ESRCH (a zombie would still count as alive). */
function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** The state letter in /proc/<pid>/stat: 'T' when stopped by SIGSTOP. */
function procState(pid: number): string {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
}

afterAll(async () => {
  await stopAll();
});

describe('LocalCluster supervisor (stub apps, real nats-server)', () => {
  const stubFile = path.join(tempDir('flotilla-stub-'), 'stub-app.js');
  fs.writeFileSync(stubFile, STUB_APP);
  const command = () => ({ command: process.execPath, args: [stubFile] });

  it('starts nats, replicas and gateway, lists them in cluster.json, restarts a killed replica, and stops everything', async () => {
    const { cluster } = await startLocalCluster({ replicas: 2, command, env: { FLOTILLA_MODE: 'sync' }, replicaEnv: { FLOTILLA_LOG_LEVEL: 'debug' } });
    const file = readClusterFile(cluster.dataDir);
    expect(file?.processes.map((p) => [p.name, p.kind])).toEqual([
      ['nats', 'nats'],
      ['replica-0', 'replica'],
      ['replica-1', 'replica'],
      ['gateway', 'gateway'],
    ]);
    for (const p of file!.processes) {
      expect(p.pid).not.toBeNull();
      expect(isAlive(p.pid!)).toBe(true);
      expect(p.restarts).toBe(0);
      expect(p.logFile).toBe(path.join(cluster.dataDir, 'logs', `${p.name}.log`));
    }
    expect(file!.gatewayUrl).toBe(cluster.gatewayUrl);
    expect(file!.natsUrl).toBe(cluster.natsUrl);
    expect(processOf(file, 'nats')?.ports.client).toBe(Number(new URL(cluster.natsUrl).port));
    expect(fs.existsSync(path.join(cluster.dataDir, 'nats'))).toBe(true);

    await cluster.waitUntilReady(20_000);
    const env = await httpJson('GET', `${cluster.httpUrl('replica-1')}/env`);
    expect(env.body).toEqual({
      FLOTILLA_MODE: 'sync',
      FLOTILLA_LOG_LEVEL: 'debug',
      FLOTILLA_CLUSTER: 'flotilla',
      FLOTILLA_NODE: 'replica-1',
      FLOTILLA_NATS_URL: cluster.natsUrl,
      FLOTILLA_DATA_DIR: path.join(cluster.dataDir, 'replica-1'),
      FLOTILLA_HTTP_PORT: String(processOf(file, 'replica-1')!.ports.http),
      FLOTILLA_API_PORT: String(processOf(file, 'replica-1')!.ports.api),
    });
    expect(cluster.apiUrl('replica-1')).toBe(`http://127.0.0.1:${processOf(file, 'replica-1')!.ports.api}`);
    expect(() => cluster.apiUrl('gateway')).toThrow(/serves no API/);
    const gatewayEnv = await httpJson('GET', `${cluster.gatewayUrl}/env`);
    expect(gatewayEnv.body.FLOTILLA_NODE).toBeUndefined();
    expect(gatewayEnv.body.FLOTILLA_MODE).toBe('sync');
    expect(gatewayEnv.body.FLOTILLA_HTTP_PORT).toBe(new URL(cluster.gatewayUrl).port);
    expect(cluster.replicaDbFile('replica-0')).toBe(path.join(cluster.dataDir, 'replica-0', 'db.sqlite'));

    // Kill -9 a replica: it comes back with a new pid, the same port, and restarts + 1.
    const old = processOf(file, 'replica-0')!;
    cluster.killReplica('replica-0', 'SIGKILL');
    const restarted = await waitFor(
      () => {
        const p = processOf(readClusterFile(cluster.dataDir), 'replica-0');
        return p && p.pid !== null && p.pid !== old.pid && p.restarts === 1 && p.state === 'running' ? p : undefined;
      },
      { what: 'replica-0 restarted in cluster.json', timeoutMs: 10_000 },
    );
    expect(isAlive(restarted.pid!)).toBe(true);
    expect(isGone(old.pid!)).toBe(true);
    expect(restarted.ports).toEqual(old.ports);
    await waitFor(async () => (await httpJson('GET', `${cluster.httpUrl('replica-0')}/readyz`)).status === 200, { what: 'restarted replica-0 serving' });

    // Pause and resume.
    const pid1 = cluster.pid('replica-1')!;
    cluster.pause('replica-1');
    await waitFor(() => procState(pid1) === 'T', { what: 'replica-1 stopped by SIGSTOP' });
    cluster.resume('replica-1');
    await waitFor(() => procState(pid1) !== 'T', { what: 'replica-1 continued' });

    // Stopped on purpose, it stays down; if its port is taken meanwhile it comes back on another.
    const port1 = processOf(readClusterFile(cluster.dataDir), 'replica-1')!.ports.http;
    await cluster.stopProcess('replica-1');
    expect(processOf(readClusterFile(cluster.dataDir), 'replica-1')).toMatchObject({ pid: null, state: 'stopped' });
    expect(isGone(pid1)).toBe(true);
    const squatter = net.createServer();
    await new Promise<void>((resolve) => squatter.listen(port1, '127.0.0.1', () => resolve()));
    try {
      await cluster.startProcess('replica-1');
      const moved = processOf(readClusterFile(cluster.dataDir), 'replica-1')!;
      expect(moved.state).toBe('running');
      expect(moved.ports.http).not.toBe(port1);
      await waitFor(async () => (await httpJson('GET', `${cluster.httpUrl('replica-1')}/env`)).body.FLOTILLA_HTTP_PORT === String(moved.ports.http), {
        what: 'replica-1 serving on its new port',
      });
    } finally {
      squatter.close();
    }

    // nats-server dies too: it comes back on the same port (clients are configured with it).
    const natsBefore = processOf(readClusterFile(cluster.dataDir), 'nats')!;
    cluster.signal('nats', 'SIGKILL');
    const natsAfter = await waitFor(
      () => {
        const p = processOf(readClusterFile(cluster.dataDir), 'nats');
        return p?.state === 'running' && p.restarts === 1 ? p : undefined;
      },
      { what: 'nats-server restarted' },
    );
    expect(natsAfter.pid).not.toBe(natsBefore.pid);
    expect(natsAfter.ports).toEqual(natsBefore.ports);
    expect(await probeNats(natsAfter.ports.client)).toBe(true);

    // Scale out.
    expect(await cluster.addReplica()).toBe('replica-2');
    await waitFor(() => processOf(readClusterFile(cluster.dataDir), 'replica-2')?.state === 'running', { what: 'replica-2 in cluster.json' });

    // Stop leaves nothing behind.
    const pids = livePids(readClusterFile(cluster.dataDir)!);
    expect(pids).toHaveLength(5);
    await cluster.stop();
    for (const pid of pids) expect(isGone(pid)).toBe(true);
    const final = readClusterFile(cluster.dataDir)!;
    expect(final.processes.every((p) => p.pid === null && p.state === 'stopped')).toBe(true);
  });

  it('reuses a given NATS server, and with restart off leaves a dead replica down', async () => {
    const nats = await startNatsServer({ jetstream: true });
    const proxy = await TcpProxy.start(nats.port);
    const natsUrlFor = (name: string) => (name === 'replica-0' ? proxy.natsUrl : undefined);
    const { cluster } = await startLocalCluster({ replicas: 1, command, natsUrl: nats.url, restart: false, natsUrlFor });
    const file = readClusterFile(cluster.dataDir)!;
    expect(file.processes.map((p) => p.name)).toEqual(['replica-0', 'gateway']);
    expect(file.natsUrl).toBe(nats.url);
    await cluster.waitUntilReady(20_000);
    expect((await httpJson('GET', `${cluster.httpUrl('replica-0')}/env`)).body.FLOTILLA_NATS_URL).toBe(proxy.natsUrl);
    expect((await httpJson('GET', `${cluster.gatewayUrl}/env`)).body.FLOTILLA_NATS_URL).toBe(nats.url);

    const pid = cluster.pid('replica-0')!;
    cluster.killReplica('replica-0', 'SIGKILL');
    const exited = await waitFor(() => {
      const p = processOf(readClusterFile(cluster.dataDir), 'replica-0');
      return p?.state === 'exited' ? p : undefined;
    }, { what: 'replica-0 exited in cluster.json' });
    expect(exited).toMatchObject({ pid: null, restarts: 0 });
    expect(isGone(pid)).toBe(true);
    // Not ready; the error says why by itself (a test's data dir is gone by the time anyone looks).
    await expect(cluster.waitUntilReady(500)).rejects.toThrow(/not ready after 500ms: replica-0 [\s\S]*--- replica-0 \(exited, pid \d+\), last lines of \S+replica-0\.log:\n.*stub listening/);

    // Started again by hand, it is a restart of the same process.
    await cluster.startProcess('replica-0');
    expect(processOf(readClusterFile(cluster.dataDir), 'replica-0')).toMatchObject({ state: 'running', restarts: 0 });

    await cluster.stop();
    expect(nats.running).toBe(true);
    await proxy.close();
    await nats.stop();
  });

  it('refuses a gateway port that is taken, and starts nothing', async () => {
    const nats = await startNatsServer({ jetstream: true });
    const port = Number(new URL(nats.url).port);
    const dataDir = tempDir('flotilla-cluster-');
    await expect(startLocalCluster({ dataDir, command, natsUrl: nats.url, port })).rejects.toThrow(new RegExp(`gateway port ${port} is not available`));
    expect(readClusterFile(dataDir)?.processes ?? []).toEqual([]);
    await nats.stop();
  });

  it('refuses a NATS URL where no server answers, and starts nothing', async () => {
    const natsUrl = `nats://127.0.0.1:${await freePort()}`;
    const dataDir = tempDir('flotilla-cluster-');
    await expect(startLocalCluster({ dataDir, command, natsUrl })).rejects.toThrow(`no NATS server answers at ${natsUrl}`);
    expect(readClusterFile(dataDir)?.processes).toEqual([]);
  });

  it('refuses a data dir held by a live supervisor, and kills what a dead supervisor left behind (only that)', async () => {
    const nats = await startNatsServer({ jetstream: true });
    const dataDir = tempDir('flotilla-cluster-');
    // A leftover child logs under <dataDir>/logs, as every child the supervisor starts does.
    fs.mkdirSync(path.join(dataDir, 'logs'), { recursive: true });
    const orphanLog = fs.openSync(path.join(dataDir, 'logs', 'replica-0.log'), 'a');
    const orphan = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: ['ignore', orphanLog, orphanLog] });
    fs.closeSync(orphanLog);
    const orphanExit = new Promise((resolve) => orphan.on('exit', resolve));
    // A process that took a listed pid (here: any other node process) is not ours to kill.
    const stranger = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    try {
      const base = { cluster: 'flotilla', natsUrl: nats.url, gatewayUrl: '', dataDir, startedAt: '', updatedAt: '' };
      const leftover = { name: 'replica-0', kind: 'replica' as const, pid: orphan.pid!, ports: {}, logFile: '', restarts: 0, state: 'running' as const };
      // The "supervisor" is alive (the orphan itself runs node): the dir is taken.
      fs.writeFileSync(path.join(dataDir, 'cluster.json'), JSON.stringify({ ...base, supervisorPid: orphan.pid, processes: [] }));
      await expect(startLocalCluster({ dataDir, command, natsUrl: nats.url })).rejects.toThrow(/in use by a running supervisor/);
      expect(readClusterFile(dataDir)?.supervisorPid).toBe(orphan.pid);
      expect(isAlive(orphan.pid!)).toBe(true);

      // The supervisor is dead: its leftover is killed and the cluster starts.
      const dead = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
      await new Promise((resolve) => dead.on('exit', resolve));
      const recycled = { ...leftover, name: 'replica-1', pid: stranger.pid! };
      fs.writeFileSync(path.join(dataDir, 'cluster.json'), JSON.stringify({ ...base, supervisorPid: dead.pid, processes: [leftover, recycled] }));
      const { cluster } = await startLocalCluster({ dataDir, command, natsUrl: nats.url });
      await orphanExit;
      expect(isGone(orphan.pid!)).toBe(true);
      expect(isAlive(stranger.pid!)).toBe(true);
      expect(readClusterFile(dataDir)?.supervisorPid).toBe(process.pid);
      await cluster.stop();
      // A supervisor that stopped cleanly (every process stopped) frees the dir, even when its pid
      // now belongs to another live node process.
      const after = readClusterFile(dataDir)!;
      expect(after.processes.every((p) => p.state === 'stopped' || p.state === 'exited')).toBe(true);
      fs.writeFileSync(path.join(dataDir, 'cluster.json'), JSON.stringify({ ...after, supervisorPid: stranger.pid }));
      const again = await startLocalCluster({ dataDir, command, natsUrl: nats.url });
      await again.cluster.stop();
      expect(isAlive(stranger.pid!)).toBe(true);
    } finally {
      orphan.kill('SIGKILL');
      stranger.kill('SIGKILL');
      await nats.stop();
    }
  });

  it('`flotilla up` runs until SIGTERM and then leaves no process', async () => {
    const root = stubRoot();
    const dataDir = tempDir('flotilla-cli-');
    const port = await freePort();
    const log = fs.openSync(path.join(dataDir, 'cli.log'), 'a');
    const cli = spawn(process.execPath, [CLI, 'up', '--replicas', '2', '--port', String(port), '--data-dir', dataDir, '--mode', 'semi-sync'], {
      env: { ...process.env, FLOTILLA_ROOT: root },
      stdio: ['ignore', log, log],
    });
    fs.closeSync(log);
    const exit = new Promise<number | null>((resolve) => cli.on('exit', (code) => resolve(code)));
    try {
      const file = await waitFor(
        () => {
          const f = readClusterFile(dataDir);
          return f && f.processes.length === 4 && f.processes.every((p) => p.state === 'running') ? f : undefined;
        },
        { what: 'cluster.json with 4 running processes', timeoutMs: 20_000 },
      );
      expect(file.supervisorPid).toBe(cli.pid);
      await waitFor(async () => (await httpJson('GET', `http://127.0.0.1:${port}/readyz`)).status === 200, { what: 'gateway /readyz' });
      await waitFor(() => fs.readFileSync(path.join(dataDir, 'cli.log'), 'utf8').includes(`ready at http://127.0.0.1:${port}`), {
        what: '"ready" line on stdout',
      });
      const env = await httpJson('GET', `http://127.0.0.1:${port}/env`);
      expect(env.body.FLOTILLA_MODE).toBe('semi-sync');
      // Every replica's own API is named on stdout, with the port cluster.json lists.
      const apis = file.processes.filter((p) => p.kind === 'replica').map((p) => `${p.name} http://127.0.0.1:${p.ports.api}`);
      expect(apis).toHaveLength(2);
      expect(fs.readFileSync(path.join(dataDir, 'cli.log'), 'utf8')).toContain(`flotilla: replica APIs  ${apis.join('   ')}`);
      const pids = livePids(file);
      expect(pids).toHaveLength(4);

      cli.kill('SIGTERM');
      expect(await exit).toBe(0);
      for (const pid of pids) expect(isGone(pid)).toBe(true);
      expect(fs.readFileSync(path.join(dataDir, 'cli.log'), 'utf8')).toContain('flotilla: stopped');
    } finally {
      if (cli.exitCode === null) cli.kill('SIGKILL');
    }
  });
});

describe('LocalCluster with the real apps (1 replica, 2 monitors, gateway)', () => {
  it('serves, restarts a killed replica, and stops cleanly', async () => {
    const { cluster } = await startLocalCluster({ replicas: 1, monitor: true });
    const file = readClusterFile(cluster.dataDir)!;
    expect(file.processes.map((p) => p.name)).toEqual(['nats', 'replica-0', 'monitor-0', 'monitor-1', 'gateway']);
    for (const p of file.processes) expect(isAlive(p.pid!)).toBe(true);
    await waitFor(async () => (await httpJson('GET', `${cluster.httpUrl('replica-0')}/healthz`)).status === 200, {
      what: 'replica-0 /healthz',
      timeoutMs: 30_000,
    });
    const view = await waitFor(
      async () => {
        const res = await httpJson('GET', `${cluster.gatewayUrl}/v1/cluster`);
        return res.status === 200 && res.body.nodes?.some((n: { name: string }) => n.name === 'replica-0') ? res.body : undefined;
      },
      { what: 'replica-0 in GET /v1/cluster', timeoutMs: 30_000 },
    );
    expect(view.cluster).toBe('flotilla');

    const old = processOf(file, 'replica-0')!;
    cluster.killReplica('replica-0', 'SIGKILL');
    const restarted = await waitFor(
      () => {
        const p = processOf(readClusterFile(cluster.dataDir), 'replica-0');
        return p && p.pid !== null && p.pid !== old.pid && p.restarts === old.restarts + 1 ? p : undefined;
      },
      { what: 'replica-0 restarted', timeoutMs: 15_000 },
    );
    expect(isAlive(restarted.pid!)).toBe(true);
    await waitFor(async () => (await httpJson('GET', `${cluster.httpUrl('replica-0')}/healthz`)).status === 200, {
      what: 'restarted replica-0 /healthz',
      timeoutMs: 30_000,
    });

    // Exactly one of the two monitors is active (holds the monitor lease).
    await waitFor(
      async () => {
        const states = await Promise.all(['monitor-0', 'monitor-1'].map(async (m) => (await httpJson('GET', `${cluster.httpUrl(m)}/healthz`)).body?.active));
        return states.filter((a) => a === true).length === 1 && states.filter((a) => a === false).length === 1;
      },
      { what: 'one active and one standby monitor', timeoutMs: 30_000 },
    );

    const pids = livePids(readClusterFile(cluster.dataDir)!);
    expect(pids).toHaveLength(5);
    await cluster.stop();
    for (const pid of pids) expect(isGone(pid)).toBe(true);
  });

  // SIGHUP: the terminal was closed. The children run in sessions of their own (detached), so the
  // hang-up never reaches them: only `flotilla up` can stop them.
  it('`flotilla up --replicas 1` becomes ready and SIGHUP (terminal closed) leaves no process', async () => {
    const dataDir = tempDir('flotilla-cli-real-');
    const port = await freePort();
    const log = fs.openSync(path.join(dataDir, 'cli.log'), 'a');
    const cli = spawn(process.execPath, [CLI, 'up', '--replicas', '1', '--port', String(port), '--data-dir', dataDir], { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    const exit = new Promise<number | null>((resolve) => cli.on('exit', (code) => resolve(code)));
    try {
      const file = await waitFor(
        () => {
          const f = readClusterFile(dataDir);
          return f && ['nats', 'replica-0', 'gateway'].every((n) => processOf(f, n)?.state === 'running') ? f : undefined;
        },
        { what: 'cluster.json with nats, replica-0 and gateway running', timeoutMs: 30_000 },
      );
      await waitFor(async () => (await httpJson('GET', `http://127.0.0.1:${port}/readyz`)).status === 200, {
        what: 'gateway /readyz 200',
        timeoutMs: 30_000,
      });
      const pids = livePids(readClusterFile(dataDir)!);
      expect(pids.length).toBeGreaterThanOrEqual(file.processes.length);

      cli.kill('SIGHUP');
      expect(await exit).toBe(0);
      for (const pid of pids) expect(isGone(pid)).toBe(true);
    } finally {
      if (cli.exitCode === null) cli.kill('SIGKILL');
    }
  });
});
