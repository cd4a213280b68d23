/** What every role of a replica is given: its collaborators, as interfaces. */
import type { FlotillaConfig } from '@flotilla/config';
import type { Clock, Logger } from '@flotilla/logging';
import type { Subjects } from '@flotilla/protocol';
import type { Store } from '@flotilla/storage';
import type { Transport } from '@flotilla/transport';

export interface RoleContext {
  node: string;
  store: Store;
  transport: Transport;
  subjects: Subjects;
  clock: Clock;
  log: Logger;
  config: FlotillaConfig;
  /** Counters for tests and operators (catch-ups, snapshots, refused messages). */
  counters: Counters;
  /** A violated invariant: the node must stop rather than serve wrong data. */
  fatal(err: Error): void;
}

export class Counters {
  readonly values: Record<string, number> = {};
  inc(name: string, by = 1): void {
    this.values[name] = (this.values[name] ?? 0) + by;
  }
  get(name: string): number {
    return this.values[name] ?? 0;
  }
}
