/**
 * Frees a large file of a replica's data directory in the background, a step at a time
 * (`removeFilePaced`, libs/storage), and says so in one log line: removed (with how long it took)
 * or could not be removed. Nothing waits for it.
 */
import type { Clock, Logger } from '@flotilla/logging';
import { removeFilePaced } from '@flotilla/storage';

export function removeInBackground(ctx: { log: Logger; clock: Clock }, file: string, what: string): void {
  const started = ctx.clock.monotonic();
  void removeFilePaced(file).then(
    (removed) => removed && ctx.log.info('removed', { what, file, ms: Math.round(ctx.clock.monotonic() - started) }),
    (err: Error) => ctx.log.warn('could not remove', { what, file, err: err.message }),
  );
}
