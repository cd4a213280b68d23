/**
 * The test harness itself (libs/testing) against real servers: nats-server launcher, TCP proxy,
 * table checksums on a real SQLite file, spawnApp and stopAll, temp dirs.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { isAlive, probeNats } from '@flotilla/local-cluster';
import {
  freePort,
  httpJson,
  keepTestDirs,
  readTableChecksums,
  spawnApp,
  startLocalCluster,
  startNatsServer,
  stopAll,
  TcpProxy,
  tempDir,
  tempDirCount,
  trackedCount,
  waitFor,
} from '@flotilla/testing';

jest.setTimeout(60_000);

afterAll(async () => {
  await stopAll();
});

/** Sends `text` over a fresh connection to `port` and resolves with what comes back (or the error code). */
function roundTrip(port: number, text: string, timeoutMs = 500): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let received = '';
    const done = (result: string) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => done(received || 'TIMEOUT'), timeoutMs);
    socket.on('connect', () => socket.write(text));
    socket.on('data', (chunk) => {
      received += chunk.toString();
      if (received.length >= text.length) done(received);
    });
    socket.on('error', (e: NodeJS.ErrnoException) => done(e.code ?? 'ERROR'));
    socket.on('close', () => done(received || 'CLOSED'));
  });
}

describe('startNatsServer', () => {
  it('starts JetStream on a free port, survives a restart on the same port, and stops', async () => {
    const server = await startNatsServer({ jetstream: true });
    expect(server.url).toBe(`nats://127.0.0.1:${server.port}`);
    expect(await probeNats(server.port)).toBe(true);
    const firstPid = server.pid;
    server.kill('SIGKILL');
    await server.exited;
    expect(await probeNats(server.port)).toBe(false);
    await server.restart();
    expect(server.pid).not.toBe(firstPid);
    expect(await probeNats(server.port)).toBe(true);
    await server.stop();
    expect(isAlive(server.pid)).toBe(false);
    expect(fs.existsSync(server.storeDir)).toBe(keepTestDirs());
  });
});

describe('TcpProxy', () => {
  it('forwards, cuts (resets and refuses), blackholes (silence) and heals', async () => {
    const echo = net.createServer((socket) => socket.pipe(socket));
    const echoPort = await freePort();
    await new Promise<void>((resolve) => echo.listen(echoPort, '127.0.0.1', () => resolve()));
    try {
      const proxy = await TcpProxy.start(echoPort);
      expect(await roundTrip(proxy.port, 'hello')).toBe('hello');

      // A live connection is dropped by cut().
      const live = net.connect({ host: '127.0.0.1', port: proxy.port });
      await new Promise((r) => live.once('connect', r));
      await waitFor(() => proxy.connections === 1, { what: 'one proxied connection' });
      const closed = new Promise((r) => live.once('close', r));
      proxy.cut();
      await closed;
      expect(['CLOSED', 'ECONNRESET']).toContain(await roundTrip(proxy.port, 'x'));

      proxy.blackhole();
      expect(await roundTrip(proxy.port, 'x', 300)).toBe('TIMEOUT');

      proxy.heal();
      expect(await roundTrip(proxy.port, 'again')).toBe('again');
      await proxy.close();
      expect(await roundTrip(proxy.port, 'x')).toBe('ECONNREFUSED');
    } finally {
      echo.close();
    }
  });
});

describe('readTableChecksums', () => {
  it('hashes user tables by rowid / primary key and skips internal ones', () => {
    const dir = tempDir('flotilla-checksums-');
    const write = (file: string, order: 'asc' | 'desc') => {
      const db = new Database(path.join(dir, file));
      db.pragma('journal_mode = WAL');
      db.exec(`CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, photo BLOB, big INTEGER);
               CREATE TABLE tags (k TEXT PRIMARY KEY, v REAL) WITHOUT ROWID;
               CREATE TABLE _flotilla_log (lsn INTEGER);
               CREATE TABLE seq (id INTEGER PRIMARY KEY AUTOINCREMENT);`);
      const users = [
        [1, 'ann', Buffer.from([1, 2]), 9007199254740993n],
        [2, 'bob', null, 1n],
      ];
      const tags = [
        ['b', 2.5],
        ['a', 1],
      ];
      if (order === 'desc') {
        users.reverse();
        tags.reverse();
      }
      db.defaultSafeIntegers(true);
      for (const u of users) db.prepare('INSERT INTO users VALUES (?, ?, ?, ?)').run(...u);
      for (const t of tags) db.prepare('INSERT INTO tags VALUES (?, ?)').run(...t);
      db.prepare('INSERT INTO _flotilla_log VALUES (?)').run(order === 'asc' ? 1 : 2);
      db.close();
      return path.join(dir, file);
    };
    const a = readTableChecksums(write('a.sqlite', 'asc'));
    const b = readTableChecksums(write('b.sqlite', 'desc'));
    expect(Object.keys(a).sort()).toEqual(['seq', 'tags', 'users']);
    expect(a.users.rows).toBe(2);
    expect(a.tags.rows).toBe(2);
    expect(a).toEqual(b);

    const db = new Database(path.join(dir, 'b.sqlite'));
    db.prepare("UPDATE users SET name = 'bobby' WHERE id = 2").run();
    db.close();
    const c = readTableChecksums(path.join(dir, 'b.sqlite'));
    expect(c.users.sha256).not.toBe(a.users.sha256);
    expect(c.tags).toEqual(a.tags);
  });

  it('is type-exact: a REAL 5.0 is other data than an INTEGER 5', () => {
    const dir = tempDir('flotilla-checksums-typed-');
    const file = (name: string, value: number | bigint) => {
      const db = new Database(path.join(dir, name));
      db.exec('CREATE TABLE typed(x)');
      db.prepare('INSERT INTO typed VALUES (?)').run(value);
      db.close();
      return path.join(dir, name);
    };
    expect(readTableChecksums(file('real.sqlite', 5)).typed).not.toEqual(readTableChecksums(file('int.sqlite', 5n)).typed);
    expect(readTableChecksums(file('int2.sqlite', 5n)).typed).toEqual(readTableChecksums(path.join(dir, 'int.sqlite')).typed);
  });

  it('refuses a file that does not exist', () => {
    expect(() => readTableChecksums(path.join(os.tmpdir(), 'no-such-flotilla.sqlite'))).toThrow();
  });
});

describe('spawnApp and stopAll', () => {
  it('runs the built gateway, pauses and resumes it, and stopAll leaves nothing', async () => {
    const nats = await startNatsServer({ jetstream: true });
    const port = await freePort();
    const logFile = path.join(tempDir('flotilla-spawn-'), 'gateway.log');
    const app = spawnApp('gateway', { FLOTILLA_CLUSTER: 'harness', FLOTILLA_NATS_URL: nats.url, FLOTILLA_HTTP_PORT: String(port) }, { logFile });
    await waitFor(async () => (await httpJson('GET', `http://127.0.0.1:${port}/healthz`)).status === 200, {
      what: 'gateway /healthz',
      timeoutMs: 30_000,
    });
    app.pause();
    await expect(httpJson('GET', `http://127.0.0.1:${port}/healthz`, undefined, { timeoutMs: 300 })).rejects.toThrow();
    app.resume();
    expect((await httpJson('GET', `http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    expect(fs.statSync(logFile).size).toBeGreaterThan(0);

    expect(trackedCount()).toBeGreaterThanOrEqual(2);
    await stopAll();
    expect(trackedCount()).toBe(0);
    expect(app.running).toBe(false);
    expect(isAlive(app.pid)).toBe(false);
    expect(isAlive(nats.pid)).toBe(false);
    expect(fs.existsSync(path.dirname(logFile))).toBe(keepTestDirs());
    expect(tempDirCount()).toBe(0);
    await app.exited;
  });
});

describe('temp dirs', () => {
  /** Stands in for every app: spawned, idle, ended by SIGTERM. */
  const idle = () => ({ command: process.execPath, args: ['-e', 'setInterval(() => {}, 1000)'] });

  it('startLocalCluster keeps a data dir it made past cluster.stop() (tests read it then); stopAll removes it; a given one stays', async () => {
    const given = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-given-'));
    try {
      const { cluster: own } = await startLocalCluster({ replicas: 0, monitor: false, command: idle });
      const { cluster: theirs } = await startLocalCluster({ replicas: 0, monitor: false, command: idle, dataDir: given });
      await own.stop();
      await theirs.stop();
      expect(fs.existsSync(path.join(own.dataDir, 'cluster.json'))).toBe(true);
      await stopAll();
      expect(fs.existsSync(own.dataDir)).toBe(keepTestDirs());
      expect(fs.existsSync(path.join(given, 'cluster.json'))).toBe(true);
    } finally {
      fs.rmSync(given, { recursive: true, force: true });
    }
  });
});
