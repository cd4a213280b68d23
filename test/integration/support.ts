/**
 * Shared helpers of the integration and fault tiers: a NATS client for control requests, type-exact
 * checksums read straight from a replica's SQLite file, and a client load that records what was
 * acknowledged.
 */
import Database from 'better-sqlite3';
import { connect, NatsConnection } from 'nats';
import { ChecksumsReply, decodeEnvelope, encode, PROTOCOL_VERSION, StatusReply, subjectsFor, throwIfError } from '@flotilla/protocol';
import { tableChecksums } from '@flotilla/storage';
import { httpJson } from '@flotilla/testing';

export async function natsClient(url: string): Promise<NatsConnection> {
  return connect({ servers: url, maxReconnectAttempts: -1 });
}

async function control<T>(nc: NatsConnection, cluster: string, node: string, type: string): Promise<T> {
  const m = await nc.request(subjectsFor(cluster).control(node), encode({ type, v: PROTOCOL_VERSION }), { timeout: 5000 });
  const r = decodeEnvelope(m.data);
  throwIfError(r);
  return r as unknown as T;
}

export function statusOf(nc: NatsConnection, node: string, cluster = 'flotilla'): Promise<StatusReply> {
  return control<StatusReply>(nc, cluster, node, 'status');
}

export function checksumsOverNats(nc: NatsConnection, node: string, cluster = 'flotilla'): Promise<ChecksumsReply> {
  return control<ChecksumsReply>(nc, cluster, node, 'checksums');
}

/** Type-exact per-table checksums read from the SQLite file itself (read-only, WAL-safe). */
export function fileChecksums(dbFile: string): { lsn: number; tables: Record<string, { rows: number; sha256: string }> } {
  const db = new Database(dbFile, { readonly: true, fileMustExist: true });
  try {
    const read = db.transaction(() => ({
      lsn: Number(db.prepare("SELECT value FROM _flotilla_meta WHERE key = 'applied_lsn'").pluck().get()),
      tables: tableChecksums(db),
    }));
    return read();
  } finally {
    db.close();
  }
}

export interface Ack {
  key: number;
  lsn: number;
}

/**
 * Runs `clients` concurrent writers inserting (k, v) rows into `table` until `stop()` is called
 * or `maxWrites` writes were acknowledged; records every acknowledged write and every latency.
 */
export function startLoad(gatewayUrl: string, table: string, opts: { clients: number; maxWrites: number; firstKey?: number }) {
  let next = opts.firstKey ?? 0;
  let stopped = false;
  const acked: Ack[] = [];
  const failures: { status: number; code?: string }[] = [];
  const latenciesMs: { at: number; ms: number }[] = [];
  const worker = async () => {
    while (!stopped && acked.length < opts.maxWrites) {
      const key = next++;
      const t0 = performance.now();
      const r = await httpJson('POST', `${gatewayUrl}/v1/execute`, {
        statements: [{ sql: `INSERT INTO ${table}(k, v) VALUES (?, ?)`, params: [key, `value-${key}`] }],
        idempotencyKey: `${table}-${key}`,
      }).catch((e) => ({ status: 0, body: { error: { code: String(e) } } }) as { status: number; body: any });
      latenciesMs.push({ at: t0, ms: performance.now() - t0 });
      if (r.status === 200) acked.push({ key, lsn: Number(r.body.lsn) });
      else {
        failures.push({ status: r.status, code: r.body?.error?.code });
        await new Promise((res) => setTimeout(res, 20));
      }
    }
  };
  const done = Promise.all(Array.from({ length: opts.clients }, worker));
  return {
    acked,
    failures,
    latenciesMs,
    async stop() {
      stopped = true;
      await done;
    },
    done,
  };
}
