/**
 * Small helpers of the Kubernetes test tier: free loopback ports, polling with a deadline, and
 * running the cached tools (kubectl, helm) built by scripts/k8s-tools.sh.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** Poll period of {@link waitFor}. */
const WAIT_FOR_POLL_MS = 50;
/** Largest output kept from a tool run (stdout and stderr each). */
const TOOL_OUTPUT_BYTES_MAX = 64 * 1024 * 1024;

/** Directory of the binaries provisioned by scripts/k8s-tools.sh (same default as the script). */
export function toolsBinDir(): string {
  return join(process.env.FLOTILLA_TOOLS_DIR ?? join(homedir(), '.cache', 'flotilla', 'k8s-tools'), 'bin');
}

/** Absolute path of a cached tool; throws with the command that provisions it when missing. */
export function toolPath(name: 'kube-apiserver' | 'kubectl' | 'etcd' | 'helm'): string {
  const path = join(toolsBinDir(), name);
  if (!existsSync(path)) {
    throw new Error(`${path} is missing: run \`bash scripts/k8s-tools.sh\` (or \`npm run test:k8s\`) to build and cache it`);
  }
  return path;
}

/** A TCP port on 127.0.0.1 that was free a moment ago (the kernel's choice). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('no port assigned'))));
    });
  });
}

/**
 * Polls `condition` until it returns a truthy value (which is returned) or `timeoutMs` passes
 * (then throws, naming `what` and the last error the condition threw).
 */
export async function waitFor<T>(what: string, condition: () => T | Promise<T>, timeoutMs = 10_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await condition();
      if (value) return value as NonNullable<T>;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const why = lastError instanceof Error ? `: last error: ${lastError.message}` : '';
      throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}${why}`);
    }
    await new Promise((r) => setTimeout(r, WAIT_FOR_POLL_MS));
  }
}

/** Result of a finished tool run. */
export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a cached tool to completion and returns its exit code and output (never throws on a
 * non-zero exit; the caller asserts). `input` is written to stdin.
 */
export function runTool(
  name: 'kubectl' | 'helm',
  args: string[],
  options: { env?: NodeJS.ProcessEnv; input?: string; cwd?: string } = {},
): Promise<ToolResult> {
  const path = toolPath(name);
  return new Promise((resolve, reject) => {
    if (options.input === undefined) {
      execFile(path, args, { env: { ...process.env, ...options.env }, cwd: options.cwd, maxBuffer: TOOL_OUTPUT_BYTES_MAX }, (err, stdout, stderr) => {
        const code = err ? (typeof (err as NodeJS.ErrnoException).code === 'number' ? Number((err as NodeJS.ErrnoException).code) : 1) : 0;
        if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') return reject(err);
        resolve({ code, stdout, stderr });
      });
      return;
    }
    const child = spawn(path, args, { env: { ...process.env, ...options.env }, cwd: options.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.end(options.input);
  });
}
