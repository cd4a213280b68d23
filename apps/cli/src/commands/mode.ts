import { callGateway } from '../gateway-client';
import { Io } from '../io';

export interface ModeOptions {
  gateway: string;
  mode?: string;
  syncFollowers?: number;
  syncPolicy?: string;
  syncTimeoutMs?: number;
  json: boolean;
}

/** `flotilla mode`: changes the replication mode at run time (POST /v1/admin/mode), cluster-wide. */
export async function runMode(options: ModeOptions, io: Io): Promise<number> {
  const body: Record<string, unknown> = {};
  if (options.mode !== undefined) body.mode = options.mode;
  if (options.syncFollowers !== undefined) body.syncFollowers = options.syncFollowers;
  if (options.syncPolicy !== undefined) body.syncPolicy = options.syncPolicy;
  if (options.syncTimeoutMs !== undefined) body.syncTimeoutMs = options.syncTimeoutMs;
  const reply = await callGateway<Record<string, unknown>>(options.gateway, 'POST', '/v1/admin/mode', body);
  io.out(
    options.json
      ? JSON.stringify(reply, null, 2)
      : `mode ${String(reply.mode)} (syncFollowers ${String(reply.syncFollowers)}, policy ${String(reply.syncPolicy)}, timeout ${String(reply.syncTimeoutMs)} ms), recorded at lsn ${String(reply.lsn)}`,
  );
  return 0;
}
