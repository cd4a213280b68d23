/**
 * Structured JSON logging. Core code depends on the small {@link Logger} interface; processes
 * back it with pino (one JSON object per line on stdout, so `kubectl logs` reads as the story of
 * the cluster). Replication lines carry node, role, epoch and lsn as fields.
 */
import pino from 'pino';

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger whose lines all carry `fields` (later values win). */
  child(fields: LogFields): Logger;
}

class PinoLogger implements Logger {
  constructor(private readonly p: pino.Logger) {}
  debug(msg: string, fields?: LogFields): void {
    this.p.debug(fields ?? {}, msg);
  }
  info(msg: string, fields?: LogFields): void {
    this.p.info(fields ?? {}, msg);
  }
  warn(msg: string, fields?: LogFields): void {
    this.p.warn(fields ?? {}, msg);
  }
  error(msg: string, fields?: LogFields): void {
    this.p.error(fields ?? {}, msg);
  }
  child(fields: LogFields): Logger {
    return new PinoLogger(this.p.child(fields));
  }
}

/** A JSON-lines logger on stdout. `base` fields (app, node) go on every line. */
export function createLogger(base: LogFields, level = 'info'): Logger {
  return new PinoLogger(
    pino({ level, base, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) } }),
  );
}

/** A logger that keeps lines in memory, for unit tests. */
export class MemoryLogger implements Logger {
  readonly lines: { level: string; msg: string; fields: LogFields }[] = [];
  constructor(private readonly base: LogFields = {}, lines?: MemoryLogger['lines']) {
    if (lines) this.lines = lines;
  }
  private push(level: string, msg: string, fields?: LogFields): void {
    this.lines.push({ level, msg, fields: { ...this.base, ...fields } });
  }
  debug(msg: string, fields?: LogFields): void {
    this.push('debug', msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.push('info', msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.push('warn', msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.push('error', msg, fields);
  }
  child(fields: LogFields): Logger {
    return new MemoryLogger({ ...this.base, ...fields }, this.lines);
  }
}
