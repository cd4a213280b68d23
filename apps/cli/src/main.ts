#!/usr/bin/env node
/**
 * `flotilla` CLI entry point. Exit codes: 0 success, 1 any error (printed as
 * `error: <CODE>: <message>` on stderr, never a stack trace).
 */
import { LocalClusterError } from '@flotilla/local-cluster';
import { runChaos } from './commands/chaos';
import { runDiscarded } from './commands/discarded';
import { runSql } from './commands/sql';
import { runStatus } from './commands/status';
import { runSwitchover } from './commands/switchover';
import { runMode } from './commands/mode';
import { runUp } from './commands/up';
import { CliError } from './gateway-client';
import { processIo } from './io';
import { buildProgram } from './program';

/** One line for an error: the gateway's code when it has one. */
export function errorLine(e: unknown): string {
  if (e instanceof CliError) return `error: ${e.code}: ${e.message}`;
  if (e instanceof LocalClusterError) return `error: ${e.message}`;
  return `error: ${(e as Error)?.message ?? String(e)}`;
}

async function main(argv: string[]): Promise<void> {
  const program = buildProgram(
    {
      up: (o) => runUp(o, processIo),
      status: (o) => runStatus(o, processIo),
      sql: (sql, o) => runSql(sql, o, processIo),
      switchover: (o) => runSwitchover(o, processIo),
      mode: (o) => runMode(o, processIo),
      chaos: (o) => runChaos(o, processIo),
      discarded: (o) => runDiscarded(o, processIo),
    },
    (code) => {
      process.exitCode = code;
    },
  );
  try {
    await program.parseAsync(argv);
  } catch (e) {
    processIo.err(errorLine(e));
    process.exitCode = 1;
  }
}

process.on('uncaughtException', (e) => {
  processIo.err(errorLine(e));
  // 'exit' listeners (see runUp) kill any child processes.
  process.exit(1);
});

void main(process.argv);
