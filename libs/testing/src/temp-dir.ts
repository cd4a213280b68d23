/**
 * Temp dirs of a test run. Every dir a test (or a helper of this lib) creates is registered here
 * and removed by {@link removeTempDirs}, which `stopAll()` calls once it has stopped every
 * tracked process: a dir outlives the processes that write into it and the test code that reads
 * it after killing them (SQLite files, logs), and nothing outlives the test file.
 * FLOTILLA_KEEP_TEST_DIRS=1 keeps them all for debugging.
 *
 * No `process.on('exit')` backstop: Jest gives each test file its own `process` object, whose
 * 'exit' never fires, so `stopAll()` in afterAll/afterEach is what removes them.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** Environment variable that keeps every test dir (for debugging); any value but '' and '0'. */
export const KEEP_TEST_DIRS_ENV = 'FLOTILLA_KEEP_TEST_DIRS';

/** Attempts of one removal: a process killed a moment ago may still close or create a file. */
const REMOVE_RETRIES_MAX = 5;
/** Pause between those attempts. */
const REMOVE_RETRY_DELAY_MS = 100;

const registered = new Set<string>();

/** True when FLOTILLA_KEEP_TEST_DIRS asks to keep test dirs (set, and neither '' nor '0'). */
export function keepTestDirs(env: NodeJS.ProcessEnv = process.env): boolean {
  const value = env[KEEP_TEST_DIRS_ENV];
  return value !== undefined && value !== '' && value !== '0';
}

/**
 * Creates a fresh dir `<os tmpdir>/<prefix>XXXXXX` and registers it for {@link removeTempDirs}
 * (so `stopAll()` removes it). Returns its path.
 */
export function tempDir(prefix = 'flotilla-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  registered.add(dir);
  return dir;
}

/** Removes one dir made by {@link tempDir} now (kept with FLOTILLA_KEEP_TEST_DIRS) and forgets it. */
export function removeTempDir(dir: string): void {
  registered.delete(dir);
  if (keepTestDirs()) {
    reportKept([dir]);
    return;
  }
  fs.rmSync(dir, { recursive: true, force: true, maxRetries: REMOVE_RETRIES_MAX, retryDelay: REMOVE_RETRY_DELAY_MS });
}

/**
 * Removes every dir registered by {@link tempDir} and forgets them; with FLOTILLA_KEEP_TEST_DIRS
 * it removes nothing and prints their paths. Call it only when no process uses them any more
 * (`stopAll()` does, after stopping everything tracked). Failures are collected and thrown
 * together after every dir was tried.
 */
export function removeTempDirs(): void {
  const dirs = [...registered];
  registered.clear();
  if (dirs.length === 0) return;
  if (keepTestDirs()) {
    reportKept(dirs);
    return;
  }
  const problems: string[] = [];
  for (const dir of dirs) {
    try {
      fs.rmSync(dir, { recursive: true, force: true, maxRetries: REMOVE_RETRIES_MAX, retryDelay: REMOVE_RETRY_DELAY_MS });
    } catch (e) {
      problems.push(`${dir}: ${(e as Error).message}`);
    }
  }
  if (problems.length > 0) throw new Error(`removeTempDirs: ${problems.join('; ')}`);
}

/** Number of dirs registered and not removed yet. */
export function tempDirCount(): number {
  return registered.size;
}

function reportKept(dirs: string[]): void {
  process.stderr.write(`${KEEP_TEST_DIRS_ENV}: kept ${dirs.join(' ')}\n`);
}
