/**
 * Every server and process a test starts is registered here, so one `stopAll()` in afterAll
 * leaves nothing running even when a test failed half-way, and no temp dir behind (temp-dir.ts).
 */
import { removeTempDirs } from './temp-dir';

/** Anything that can be stopped; `describe` names it in error messages. */
export interface Stoppable {
  describe: string;
  stop(): Promise<unknown>;
  /** SIGKILLs its processes synchronously; called if the test process exits with it still tracked. */
  killNow?(): void;
}

const live = new Set<Stoppable>();
let exitHookInstalled = false;

/** Last resort when a test run dies without afterAll: no process may outlive it. */
function killTrackedNow(): void {
  for (const r of live) {
    try {
      r.killNow?.();
    } catch {
      // Exiting anyway.
    }
  }
}

/** Registers `resource` for {@link stopAll}; returns it. */
export function track<T extends Stoppable>(resource: T): T {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', killTrackedNow);
  }
  live.add(resource);
  return resource;
}

/** Forgets `resource` (it was stopped by the test itself). */
export function untrack(resource: Stoppable): void {
  live.delete(resource);
}

/** Number of tracked resources still registered. */
export function trackedCount(): number {
  return live.size;
}

/**
 * Stops every tracked resource, newest first (processes before the servers they use), and
 * forgets them; then removes every dir made by `tempDir()` (kept with
 * FLOTILLA_KEEP_TEST_DIRS), so call it after the test's last look into them. Failures are
 * collected and thrown together after everything was tried.
 */
export async function stopAll(): Promise<void> {
  const resources = [...live].reverse();
  live.clear();
  const problems: string[] = [];
  for (const r of resources) {
    try {
      await r.stop();
    } catch (e) {
      problems.push(`${r.describe}: ${(e as Error).message}`);
    }
  }
  try {
    removeTempDirs();
  } catch (e) {
    problems.push((e as Error).message);
  }
  if (problems.length > 0) throw new Error(`stopAll: ${problems.join('; ')}`);
}
