import { callGateway } from '../gateway-client';
import { Io } from '../io';

export interface SwitchoverOptions {
  gateway: string;
  to: string;
  json: boolean;
}

/** The line printed for a switchover answer ({from, to, epoch, lsn} from POST /v1/admin/switchover). */
export function formatSwitchoverReply(to: string, reply: Record<string, unknown> | undefined): string {
  const leader = typeof reply?.to === 'string' ? reply.to : typeof reply?.leader === 'string' ? reply.leader : to;
  const epoch = reply?.epoch !== undefined ? ` at epoch ${String(reply.epoch)}` : '';
  const from = typeof reply?.from === 'string' ? ` (from ${reply.from}` : '';
  const lsn = reply?.lsn !== undefined ? `${from ? ', ' : ' ('}handed over at lsn ${String(reply.lsn)})` : from ? ')' : '';
  return `switchover done: ${leader} leads${epoch}${from}${lsn}`;
}

/** `flotilla switchover --to <node>`: planned leader change with no data loss (POST /v1/admin/switchover). */
export async function runSwitchover(options: SwitchoverOptions, io: Io): Promise<number> {
  const reply = await callGateway<Record<string, unknown> | undefined>(options.gateway, 'POST', '/v1/admin/switchover', { to: options.to });
  io.out(options.json ? JSON.stringify(reply ?? {}, null, 2) : formatSwitchoverReply(options.to, reply));
  return 0;
}
