/** First restart delay after a process dies. */
export const RESTART_BACKOFF_MIN_MS = 200;
/** Longest restart delay (a crash-looping process is retried at this pace forever). */
export const RESTART_BACKOFF_MAX_MS = 5000;
/** A process that stayed up this long is healthy again: its next crash starts the backoff over. */
export const RESTART_BACKOFF_RESET_AFTER_MS = 10_000;

/**
 * Delay before restart number `attempt` (0 = first restart after a healthy run): doubles from
 * {@link RESTART_BACKOFF_MIN_MS} up to {@link RESTART_BACKOFF_MAX_MS}, like a pod's CrashLoopBackOff.
 */
export function restartDelayMs(attempt: number, minMs = RESTART_BACKOFF_MIN_MS, maxMs = RESTART_BACKOFF_MAX_MS): number {
  if (!Number.isInteger(attempt) || attempt < 0) throw new RangeError(`restart attempt must be a non-negative integer, got ${attempt}`);
  // 2 ** 30 already exceeds any sane maximum; capping the exponent keeps the number finite.
  return Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
}
