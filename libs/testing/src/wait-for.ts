/** Default deadline of {@link waitFor}. */
export const WAIT_FOR_TIMEOUT_MS = 10_000;
/** Default pause between two attempts of {@link waitFor}. */
export const WAIT_FOR_INTERVAL_MS = 100;

export interface WaitForOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** What is awaited, in words: it names the condition in the timeout error. */
  what?: string;
}

/** Thrown by {@link waitFor} at its deadline; carries the last value and error seen. */
export class WaitForTimeoutError extends Error {
  override readonly name = 'WaitForTimeoutError';
  constructor(
    message: string,
    readonly lastValue: unknown,
    readonly lastError: unknown,
  ) {
    super(message, lastError !== undefined ? { cause: lastError } : undefined);
  }
}

function show(value: unknown): string {
  try {
    const text = JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
    if (text === undefined) return String(value);
    return text.length > 500 ? `${text.slice(0, 500)}…` : text;
  } catch {
    return String(value);
  }
}

/**
 * Calls `condition` until it returns (or resolves to) a truthy value and returns that value.
 * A call that throws counts as "not yet". Rejects with {@link WaitForTimeoutError} after
 * `timeoutMs`, naming `what` and the last value or error; a call that hangs past the deadline
 * does not stall it. Use it instead of sleeping and then asserting.
 */
export async function waitFor<T>(condition: () => T | Promise<T>, options: WaitForOptions = {}): Promise<NonNullable<T>> {
  const timeoutMs = options.timeoutMs ?? WAIT_FOR_TIMEOUT_MS;
  const intervalMs = options.intervalMs ?? WAIT_FOR_INTERVAL_MS;
  const what = options.what ?? 'condition';
  const deadline = Date.now() + timeoutMs;
  let lastValue: unknown;
  let lastError: unknown;
  let attempts = 0;
  const timeUp = Symbol('timeUp');
  for (;;) {
    attempts++;
    const remainingMs = deadline - Date.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      const result = await Promise.race([
        Promise.resolve().then(condition),
        new Promise<typeof timeUp>((resolve) => {
          timer = setTimeout(() => resolve(timeUp), Math.max(0, remainingMs));
        }),
      ]);
      if (result !== timeUp) {
        lastValue = result;
        lastError = undefined;
        if (result) return result as NonNullable<T>;
      }
    } catch (e) {
      lastError = e;
    } finally {
      clearTimeout(timer);
    }
    const now = Date.now();
    if (now >= deadline) {
      const last =
        lastError !== undefined ? `last error: ${(lastError as Error)?.message ?? show(lastError)}` : `last value: ${show(lastValue)}`;
      throw new WaitForTimeoutError(`timed out after ${timeoutMs}ms (${attempts} attempts) waiting for ${what}; ${last}`, lastValue, lastError);
    }
    await new Promise((r) => setTimeout(r, Math.min(intervalMs, deadline - now)));
  }
}
