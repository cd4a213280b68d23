import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { ChildHandle, ExitStatus, spawnChild } from './child-process';
import { freePort } from './free-port';

/** How long a fresh nats-server gets to accept its first connection. */
export const NATS_START_TIMEOUT_MS = 15_000;
/** Attempts with a new free port when the chosen one was taken in the meantime. */
const NATS_START_ATTEMPTS = 3;

const SYSTEM_LOCATIONS = ['/usr/sbin/nats-server', '/usr/local/sbin/nats-server'];

/**
 * The nats-server binary: `FLOTILLA_NATS_SERVER` if set, else `nats-server` on PATH, else
 * ~/.cache/flotilla/bin/nats-server, else /usr/sbin or /usr/local/sbin (where apt puts it).
 * Throws a message that says how to install it.
 */
export function findNatsServerBinary(env: NodeJS.ProcessEnv = process.env): string {
  if (env.FLOTILLA_NATS_SERVER) {
    if (!isExecutable(env.FLOTILLA_NATS_SERVER)) throw new Error(`FLOTILLA_NATS_SERVER=${env.FLOTILLA_NATS_SERVER} is not an executable file`);
    return env.FLOTILLA_NATS_SERVER;
  }
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (dir && isExecutable(path.join(dir, 'nats-server'))) return path.join(dir, 'nats-server');
  }
  const cached = path.join(os.homedir(), '.cache', 'flotilla', 'bin', 'nats-server');
  if (isExecutable(cached)) return cached;
  // Debian's package installs it in /usr/sbin, which is not on a normal user's PATH.
  for (const file of SYSTEM_LOCATIONS) if (isExecutable(file)) return file;
  throw new Error('nats-server not found: run scripts/setup.sh (installs it with apt-get), or set FLOTILLA_NATS_SERVER to its path');
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

export interface NatsServerOptions {
  /** Enable JetStream (needed by the lease store). Default true. */
  jetstream?: boolean;
  /** JetStream store directory; a fresh temp dir when omitted (removed by stop()). */
  dir?: string;
  /** Client port; a free one when omitted. */
  port?: number;
  /** Where the server's output goes; <dir>/nats-server.log when omitted. */
  logFile?: string;
}

/** A running nats-server on 127.0.0.1. */
export interface NatsServer {
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  readonly storeDir: string;
  readonly logFile: string;
  readonly exited: Promise<ExitStatus>;
  readonly running: boolean;
  /** SIGTERM, then SIGKILL after a grace period; removes the store dir if it was a temp dir. */
  stop(): Promise<void>;
  /** Sends a signal (SIGKILL to crash it, SIGSTOP/SIGCONT to freeze it). */
  kill(signal?: NodeJS.Signals): void;
  /** SIGSTOP: the server freezes with its connections open. */
  pause(): void;
  /** SIGCONT after {@link pause}. */
  resume(): void;
  /** Starts the server again on the same port and store dir (after stop or a crash). */
  restart(): Promise<void>;
}

/** True when a TCP client can connect to host:port and reads a NATS server's INFO line in time. */
export function probeNats(port: number, timeoutMs = 1000, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('data', (chunk) => done(chunk.toString('latin1').startsWith('INFO ')));
    socket.once('error', () => done(false));
  });
}

/**
 * Spawns one nats-server on `port` and resolves once it accepts connections; rejects (after killing
 * it) if it exits or stays silent for {@link NATS_START_TIMEOUT_MS}.
 */
export async function launchNatsServer(binary: string, port: number, storeDir: string, jetstream: boolean, logFile: string): Promise<ChildHandle> {
  const args = ['-a', '127.0.0.1', '-p', String(port)];
  if (jetstream) args.unshift('-js');
  args.push('-sd', storeDir);
  const child = spawnChild({ command: binary, args, env: process.env, logFile });
  const deadline = Date.now() + NATS_START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (!child.running) {
      const status = await child.exited;
      throw new Error(`nats-server exited at start (code ${status.code}, signal ${status.signal}); see ${logFile}`);
    }
    if (await probeNats(port, 500)) return child;
    await new Promise((r) => setTimeout(r, 50));
  }
  await child.stop(1000);
  throw new Error(`nats-server did not accept connections on port ${port} within ${NATS_START_TIMEOUT_MS}ms; see ${logFile}`);
}

/**
 * Starts `nats-server [-js] -a 127.0.0.1 -p <port> -sd <dir>` and resolves once it accepts
 * connections. On a port race (a free port taken before the server bound it) it retries with
 * another port, unless the port was given.
 */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const binary = findNatsServerBinary();
  const jetstream = options.jetstream ?? true;
  const ownDir = options.dir === undefined;
  const storeDir = options.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-nats-'));
  fs.mkdirSync(storeDir, { recursive: true });
  const logFile = options.logFile ?? path.join(storeDir, 'nats-server.log');
  let port = options.port ?? (await freePort());
  let child: ChildHandle | undefined;
  let lastError: unknown;
  for (let attempt = 0; attempt < NATS_START_ATTEMPTS && !child; attempt++) {
    try {
      child = await launchNatsServer(binary, port, storeDir, jetstream, logFile);
    } catch (e) {
      lastError = e;
      if (options.port !== undefined) break;
      port = await freePort();
    }
  }
  if (!child) throw lastError;
  let current: ChildHandle = child;
  const server: NatsServer = {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    logFile,
    get pid() {
      return current.pid;
    },
    get exited() {
      return current.exited;
    },
    get running() {
      return current.running;
    },
    async stop() {
      await current.stop();
      if (ownDir) fs.rmSync(storeDir, { recursive: true, force: true });
    },
    kill(signal: NodeJS.Signals = 'SIGTERM') {
      current.kill(signal);
    },
    pause() {
      current.pause();
    },
    resume() {
      current.resume();
    },
    async restart() {
      if (current.running) await current.stop();
      current = await launchNatsServer(binary, port, storeDir, jetstream, logFile);
    },
  };
  return server;
}
