/** Default gateway address of the CLI (FLOTILLA_GATEWAY_URL overrides it). */
export const DEFAULT_GATEWAY_URL = 'http://127.0.0.1:8080';
/** How long the CLI waits for one gateway answer. */
export const CLI_REQUEST_TIMEOUT_MS = 30_000;

/** A failure the CLI reports as `error: <code>: <message>` with exit code 1. */
export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The gateway URL: the flag, else FLOTILLA_GATEWAY_URL, else {@link DEFAULT_GATEWAY_URL}; no trailing slash. */
export function gatewayUrlOf(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return (flag ?? env.FLOTILLA_GATEWAY_URL ?? DEFAULT_GATEWAY_URL).replace(/\/+$/, '');
}

/**
 * Calls the gateway and returns the decoded JSON body of a 2xx answer. A `{error:{code,message}}`
 * answer becomes a {@link CliError} with that code; an unreachable gateway says how to start one.
 */
export async function callGateway<T>(gateway: string, method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
  const url = `${gateway}${path}`;
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(CLI_REQUEST_TIMEOUT_MS),
    });
  } catch (e) {
    const inner = (e as { cause?: { code?: string; message?: string } }).cause;
    const cause = inner?.code ?? inner?.message ?? (e as Error).message;
    throw new CliError('UNREACHABLE', `cannot reach the gateway at ${gateway} (${cause}); is \`flotilla up\` running? Use --gateway URL`, { cause: e });
  }
  const text = await res.text();
  let decoded: unknown;
  try {
    decoded = text ? JSON.parse(text) : undefined;
  } catch {
    decoded = undefined;
  }
  if (res.ok) return decoded as T;
  const error = (decoded as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  if (error && typeof error.code === 'string') {
    const retry = res.headers.get('retry-after');
    const message = typeof error.message === 'string' ? error.message : '';
    throw new CliError(error.code, retry ? `${message} (retry after ${retry}s)` : message);
  }
  throw new CliError(`HTTP_${res.status}`, `${method} ${url} answered ${res.status} ${text.slice(0, 200)}`);
}
