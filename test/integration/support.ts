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

const WRITER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const http = require('node:http');
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
let stop = false;
parentPort.on('message', (m) => { if (m === 'stop') stop = true; });
const post = (body) => new Promise((resolve) => {
  const data = JSON.stringify(body);
  const req = http.request(workerData.url + '/v1/execute', { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } }, (res) => {
    let text = ''; res.on('data', (c) => (text += c)); res.on('end', () => resolve({ status: res.statusCode, text }));
  });
  req.on('error', (e) => resolve({ status: 0, text: String(e) }));
  req.end(data);
});
(async () => {
  const samples = [];
  let key = workerData.firstKey, acked = 0, failed = 0;
  while (!stop) {
    const k = key++;
    const t0 = performance.now() + performance.timeOrigin;
    const r = await post({ statements: [{ sql: 'INSERT INTO ' + workerData.table + '(k, v) VALUES (?, ?)', params: [k, 'value-' + k] }], idempotencyKey: workerData.table + '-' + k });
    samples.push([t0, performance.now() + performance.timeOrigin - t0]);
    if (r.status === 200) acked++;
    else {
      failed++;
      await new Promise((resolve) => setTimeout(resolve, 20)); // no busy loop when the cluster is gone
    }
    if (samples.length % 50 === 0) parentPort.postMessage({ progress: acked, samples: samples.slice(-50) });
  }
  parentPort.postMessage({ done: true, samples, acked, failed });
})();
`;

/**
 * One client writing one row at a time in its own thread (its own event loop), so the latencies it
 * records are the cluster's, not stalls of the test process. Times are ms since the Unix epoch.
 */
export function startWriterThread(gatewayUrl: string, table: string, firstKey = 0) {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Worker } = require('node:worker_threads') as typeof import('node:worker_threads');
  const worker = new Worker(WRITER_SOURCE, { eval: true, workerData: { url: gatewayUrl, table, firstKey } });
  let acked = 0;
  const seen: [number, number][] = [];
  let resolveDone!: (r: { samples: [number, number][]; acked: number; failed: number }) => void;
  const done = new Promise<{ samples: [number, number][]; acked: number; failed: number }>((r) => (resolveDone = r));
  worker.on('message', (m: { progress?: number; done?: boolean; samples: [number, number][]; acked: number; failed: number }) => {
    if (m.progress !== undefined) {
      acked = m.progress;
      seen.push(...m.samples);
    }
    if (m.done) {
      resolveDone(m);
      void worker.terminate();
    }
  });
  return {
    get acked() {
      return acked;
    },
    /** [start, ms] of every write up to the last progress report (one every 50 writes). */
    samples(): [number, number][] {
      return seen;
    },
    async stop() {
      worker.postMessage('stop');
      return done;
    },
    /** Ends the thread now, whatever it was doing (for afterAll when a test failed midway). */
    async terminate() {
      await worker.terminate();
    },
  };
}
