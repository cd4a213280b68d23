import { callGateway } from '../gateway-client';
import { Io } from '../io';

export interface SwitchoverOptions {
  gateway: string;
  to: string;
  json: boolean;
}

/** The line printed for a switchover answer (fields the gateway may send: leader, epoch, lsn). */
export function formatSwitchoverReply(to: string, reply: Record<string, unknown> | undefined): string {
  const leader = typeof reply?.leader === 'string' ? reply.leader : to;
  const epoch = reply?.epoch !== undefined ? ` at epoch ${String(reply.epoch)}` : '';
  const lsn = reply?.lsn !== undefined ? `, lsn ${String(reply.lsn)}` : '';
  return `switchover done: ${leader} leads${epoch}${lsn}`;
}

/** `flotilla switchover --to <node>`: planned leader change with no data loss (POST /v1/admin/switchover). */
export async function runSwitchover(options: SwitchoverOptions, io: Io): Promise<number> {
  const reply = await callGateway<Record<string, unknown> | undefined>(options.gateway, 'POST', '/v1/admin/switchover', { to: options.to });
  io.out(options.json ? JSON.stringify(reply ?? {}, null, 2) : formatSwitchoverReply(options.to, reply));
  return 0;
}
