import { appEntry, AppName, ChildHandle, ExitStatus, findRepoRoot, spawnChild } from '@flotilla/local-cluster';
import { track, untrack } from './tracker';

/** A Flotilla process started by a test. */
export interface AppHandle {
  readonly pid: number;
  readonly logFile: string;
  /** Resolves with the exit code (null when a signal killed it); never rejects. */
  readonly exited: Promise<number | null>;
  /** Resolves with code and signal. */
  readonly exitStatus: Promise<ExitStatus>;
  readonly running: boolean;
  kill(signal?: NodeJS.Signals): void;
  /** SIGSTOP */
  pause(): void;
  /** SIGCONT */
  resume(): void;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when it is gone. */
  stop(graceMs?: number): Promise<ExitStatus>;
}

/**
 * Starts `node dist/apps/<app>/src/main.js` (built by `npm run build`) with `env` added to this
 * process's environment, stdout and stderr appended to `logFile`. Tracked for stopAll().
 */
export function spawnApp(app: AppName, env: Record<string, string>, options: { logFile: string }): AppHandle {
  const root = findRepoRoot();
  const child: ChildHandle = spawnChild({
    command: process.execPath,
    args: [appEntry(app, root)],
    env: { ...process.env, ...env },
    logFile: options.logFile,
    cwd: root,
  });
  const entry = { describe: `${app} pid ${child.pid}`, stop: () => child.stop(), killNow: () => child.kill('SIGKILL') };
  track(entry);
  void child.exited.then(() => untrack(entry));
  return {
    pid: child.pid,
    logFile: child.logFile,
    exited: child.exited.then((s) => s.code),
    exitStatus: child.exited,
    get running() {
      return child.running;
    },
    kill: (signal) => child.kill(signal),
    pause: () => child.pause(),
    resume: () => child.resume(),
    stop: (graceMs) => child.stop(graceMs),
  };
}
