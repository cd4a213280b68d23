import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Grace period between SIGTERM and SIGKILL when a process is stopped. */
export const STOP_GRACE_MS = 5000;

/** How a child process ended: its exit code, or the signal that killed it. */
export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** What to run; stdout and stderr both go (appended) to `logFile`. */
export interface SpawnSpec {
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  logFile: string;
  cwd?: string;
}

/**
 * A running child process. The child is the leader of its own process group (spawned detached),
 * so a Ctrl-C in the terminal reaches only the supervisor, which then stops children in order;
 * signals are sent to the whole group so grandchildren cannot be left behind.
 */
export interface ChildHandle {
  readonly pid: number;
  readonly logFile: string;
  /** Resolves once, when the process has exited (never rejects). */
  readonly exited: Promise<ExitStatus>;
  /** True until the exit event has been seen. */
  readonly running: boolean;
  /** Sends `signal` (default SIGTERM); a no-op after exit. */
  kill(signal?: NodeJS.Signals): void;
  /** SIGSTOP: the process freezes (no heartbeats, connections stay open). */
  pause(): void;
  /** SIGCONT after {@link pause}. */
  resume(): void;
  /** SIGTERM, wait up to `graceMs`, then SIGKILL; resolves when the process is gone. */
  stop(graceMs?: number): Promise<ExitStatus>;
}

/** True when a process with this pid exists (signal 0 probe; EPERM still means it exists). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // Already gone: nothing to signal.
    }
  }
}

/** Starts `spec` with output appended to its log file; throws if the process cannot be spawned. */
export function spawnChild(spec: SpawnSpec): ChildHandle {
  fs.mkdirSync(path.dirname(spec.logFile), { recursive: true });
  const fd = fs.openSync(spec.logFile, 'a');
  let child;
  try {
    child = spawn(spec.command, spec.args, {
      env: spec.env,
      cwd: spec.cwd,
      stdio: ['ignore', fd, fd],
      detached: true,
    });
  } finally {
    // The child holds its own copy of the descriptor.
    fs.closeSync(fd);
  }
  const pid = child.pid;
  if (pid === undefined) {
    // spawn reports ENOENT asynchronously; swallow the event and report synchronously instead.
    child.on('error', () => undefined);
    throw new Error(`cannot start ${spec.command}: spawn failed (is it installed and executable?)`);
  }
  let running = true;
  const exited = new Promise<ExitStatus>((resolve) => {
    child.on('error', () => undefined);
    child.on('exit', (code, signal) => {
      running = false;
      resolve({ code, signal });
    });
  });
  const handle: ChildHandle = {
    pid,
    logFile: spec.logFile,
    exited,
    get running() {
      return running;
    },
    kill(signal: NodeJS.Signals = 'SIGTERM') {
      if (running) signalGroup(pid, signal);
    },
    pause() {
      handle.kill('SIGSTOP');
    },
    resume() {
      handle.kill('SIGCONT');
    },
    async stop(graceMs = STOP_GRACE_MS) {
      if (!running) return exited;
      // A paused process cannot act on SIGTERM until it is continued.
      signalGroup(pid, 'SIGCONT');
      signalGroup(pid, 'SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => {
        timer = setTimeout(() => resolve('late'), graceMs);
      });
      const first = await Promise.race([exited, late]);
      clearTimeout(timer);
      if (first === 'late') signalGroup(pid, 'SIGKILL');
      return exited;
    },
  };
  return handle;
}
