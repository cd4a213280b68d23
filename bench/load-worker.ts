/**
 * Entry of every load-generator and listener thread of the benchmark. It never runs in the main
 * thread: the main thread starts it with {@link runWorker} (bench/load.ts), so a client's event loop
 * is never the one that runs what it measures. Three kinds, chosen by `workerData.kind`:
 *
 * - `http-writer`: N clients, each with its own keep-alive connection (an undici Client),
 *   POSTing one statement per request to the gateway's /v1/execute, closed loop or paced at a
 *   fixed total rate. Stops at the deadline, at `maxRequests`, or on a 'stop' message.
 * - `pg-writer`: N PostgreSQL connections (the `pg` package), one autocommit INSERT per request.
 * - `ack-listener`: a NATS subscriber to the followers' ack subject; records, per node, when each
 *   higher `applied` LSN arrived.
 *
 * Every timestamp is {@link nowMs}: the process-wide monotonic clock (CLOCK_MONOTONIC through
 * process.hrtime), so times taken in different threads compare exactly.
 */
import { parentPort, workerData } from 'node:worker_threads';

/** Milliseconds on the process-wide monotonic clock, shared by every thread of the process. */
export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** How long a writer waits after a failed request before the next one (no busy loop on errors). */
const ERROR_PAUSE_MS = 20;
/** At most this many failure bodies are kept as examples. */
const ERROR_SAMPLES_MAX = 5;

export interface WriterOptions {
  clients: number;
  /** Requests that start before warmup end are not measured. */
  warmupMs: number;
  /** Hard bound of the run, warm-up included. */
  durationMs: number;
  /** Hard bound on requests of this thread. */
  maxRequests: number;
  /** Total paced rate of this thread's clients; 0 = closed loop (each client as fast as it can). */
  ratePerS: number;
  /** Keys of client c: keyBase + c + k * keyStride (k = 0, 1, ...); keyStride ≥ clients. */
  keyBase: number;
  keyStride: number;
  /** Keep (lsn, reply time) of every measured successful write (replication lag). */
  recordWrites?: boolean;
  /** Keep (start, end, status, epoch) of every request (failover gaps). */
  recordRequests?: boolean;
  /** Stop `afterMs` after the first success whose epoch is above `epoch` (failover runs). */
  stopAfterEpochAbove?: { epoch: number; afterMs: number };
}

export interface HttpWriterData extends WriterOptions {
  kind: 'http-writer';
  url: string;
  /** SQL of the one statement per request; `?` params are (key, 'value-<key>') when `keyed`. */
  sql: string;
  keyed: boolean;
  /** Send idempotencyKey `bench-<key>`, so the gateway may retry the write on another leader. */
  idempotent?: boolean;
  requestTimeoutMs: number;
}

export interface PgWriterData extends WriterOptions {
  kind: 'pg-writer';
  connection: { host: string; port: number; user: string; database: string };
  table: string;
}

export interface AckListenerData {
  kind: 'ack-listener';
  natsUrl: string;
  subject: string;
  /** Also timestamp the leader's log batches (the live change stream) seen on this subject. */
  logSubject?: string;
}

export type WorkerData = HttpWriterData | PgWriterData | AckListenerData;

/** What a writer thread reports when it has stopped. */
export interface WriterResult {
  ok: number;
  failed: number;
  /** Successful requests that started in the measured window (after warm-up). */
  measuredOk: number;
  measuredFailed: number;
  /** Length of the measured window: from warm-up end to the last measured completion. */
  measuredMs: number;
  /** Latency of each measured successful request, ms. */
  latenciesMs: number[];
  /** [lsn, reply time ms] of measured successful writes, when recordWrites. */
  writes: [number, number][];
  /** [start ms, end ms, HTTP status (0 = network error), epoch or -1], when recordRequests. */
  requests: [number, number, number, number][];
  errorSamples: string[];
  startMs: number;
  endMs: number;
}

/**
 * What an ack listener reports: per node, [applied LSN, arrival ms, arrival wall-clock ms] each
 * time applied grew.
 */
export interface AckListenerResult {
  acks: Record<string, [number, number, number][]>;
  /** [first LSN, last LSN, arrival ms] of each log batch the leader published, when logSubject. */
  batches: [number, number, number][];
  /** [LSN, leader commit time (its wall clock, whole ms)] of each entry in those batches. */
  commits: [number, number][];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

let stopRequested = false;

/** Runs `clients` loops of `request` under the shared pacing, bounds and bookkeeping. */
async function runClients(
  o: WriterOptions,
  request: (client: number, key: number) => Promise<{ ok: boolean; lsn?: number; epoch?: number; status: number; error?: string }>,
): Promise<WriterResult> {
  const startMs = nowMs();
  const measureFromMs = startMs + o.warmupMs;
  let endAtMs = startMs + o.durationMs;
  const r: WriterResult = {
    ok: 0, failed: 0, measuredOk: 0, measuredFailed: 0, measuredMs: 0, latenciesMs: [], writes: [], requests: [], errorSamples: [], startMs, endMs: 0,
  };
  let issued = 0;
  let lastMeasuredEnd = measureFromMs;
  const intervalMs = o.ratePerS > 0 ? 1000 / o.ratePerS : 0;
  const client = async (c: number) => {
    for (let k = 0; ; k++) {
      if (stopRequested || issued >= o.maxRequests) return;
      if (intervalMs > 0) {
        // Paced: the k-th request of client c is due at a fixed slot; a late one goes at once.
        const dueMs = startMs + (k * o.clients + c) * intervalMs;
        if (dueMs >= endAtMs) return;
        await sleep(dueMs - nowMs());
      }
      const t0 = nowMs();
      if (t0 >= endAtMs || stopRequested) return;
      issued++;
      const key = o.keyBase + c + k * o.keyStride;
      const res = await request(c, key);
      const t1 = nowMs();
      const measured = t0 >= measureFromMs && t1 <= endAtMs;
      if (o.recordRequests) r.requests.push([t0, t1, res.status, res.epoch ?? -1]);
      if (res.ok) {
        r.ok++;
        const stopRule = o.stopAfterEpochAbove;
        if (stopRule && (res.epoch ?? -1) > stopRule.epoch) endAtMs = Math.min(endAtMs, t1 + stopRule.afterMs);
        if (measured) {
          r.measuredOk++;
          r.latenciesMs.push(t1 - t0);
          if (o.recordWrites && res.lsn !== undefined) r.writes.push([res.lsn, t1]);
        }
      } else {
        r.failed++;
        if (measured) r.measuredFailed++;
        if (res.error && r.errorSamples.length < ERROR_SAMPLES_MAX) r.errorSamples.push(res.error);
      }
      if (measured) lastMeasuredEnd = Math.max(lastMeasuredEnd, t1);
      if (!res.ok) await sleep(ERROR_PAUSE_MS);
    }
  };
  await Promise.all(Array.from({ length: o.clients }, (_, c) => client(c)));
  r.measuredMs = Math.max(0, lastMeasuredEnd - measureFromMs);
  r.endMs = nowMs();
  return r;
}

async function httpWriter(d: HttpWriterData): Promise<WriterResult> {
  // undici, one keep-alive connection per client: about half the CPU per request of http.request
  // (52 vs 94 µs measured here), and the load generator shares the cores with the cluster.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Client } = require('undici') as typeof import('undici');
  const origin = new URL(d.url).origin;
  const agents = Array.from({ length: d.clients }, () => new Client(origin, { pipelining: 1, headersTimeout: d.requestTimeoutMs, bodyTimeout: d.requestTimeoutMs }));
  const post = async (client: number, body: string): Promise<{ status: number; text: string }> => {
    try {
      const res = await agents[client].request({ path: '/v1/execute', method: 'POST', headers: { 'content-type': 'application/json' }, body });
      return { status: res.statusCode, text: await res.body.text() };
    } catch (e) {
      return { status: 0, text: String(e) };
    }
  };
  try {
    return await runClients(d, async (client, key) => {
      const statement = d.keyed ? { sql: d.sql, params: [key, `value-${key}`] } : { sql: d.sql };
      const body = d.idempotent ? { statements: [statement], idempotencyKey: `bench-${key}` } : { statements: [statement] };
      const { status, text } = await post(client, JSON.stringify(body));
      if (status !== 200) return { ok: false, status, error: `${status} ${text.slice(0, 200)}` };
      const reply = JSON.parse(text) as { lsn: string; epoch: number };
      return { ok: true, status, lsn: Number(reply.lsn), epoch: reply.epoch };
    });
  } finally {
    await Promise.all(agents.map((a) => a.destroy()));
  }
}

async function pgWriter(d: PgWriterData): Promise<WriterResult> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Client } = require('pg') as typeof import('pg');
  const clients = Array.from({ length: d.clients }, () => new Client({ ...d.connection }));
  // Connections are opened before the clock starts: connection set-up is not what is measured.
  await Promise.all(clients.map((c) => c.connect()));
  const sql = `INSERT INTO ${d.table}(k, v) VALUES ($1, $2)`;
  try {
    return await runClients(d, async (client, key) => {
      try {
        await clients[client].query(sql, [key, `value-${key}`]);
        return { ok: true, status: 200 };
      } catch (e) {
        return { ok: false, status: 0, error: (e as Error).message };
      }
    });
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  }
}

async function ackListener(d: AckListenerData): Promise<AckListenerResult> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { connect } = require('nats') as typeof import('nats');
  const nc = await connect({ servers: d.natsUrl });
  const acks: Record<string, [number, number, number][]> = {};
  // The leader stamps entries with its wall clock (Date.now(), whole ms), on this same host.
  const wallMs = () => performance.timeOrigin + performance.now();
  const last: Record<string, number> = {};
  const decoder = new TextDecoder();
  const sub = nc.subscribe(d.subject, {
    callback: (_err, m) => {
      const t = nowMs();
      const wall = wallMs();
      try {
        const a = JSON.parse(decoder.decode(m.data)) as { node: string; applied: string };
        const applied = Number(a.applied);
        if (!(applied > (last[a.node] ?? -1))) return;
        last[a.node] = applied;
        (acks[a.node] ??= []).push([applied, t, wall]);
      } catch {
        // Not an ack: nothing to record.
      }
    },
  });
  const batches: [number, number, number][] = [];
  const commits: [number, number][] = [];
  const logSub = d.logSubject
    ? nc.subscribe(d.logSubject, {
        callback: (_err, m) => {
          const t = nowMs();
          try {
            const b = JSON.parse(decoder.decode(m.data)) as { entries: { lsn: string; ts: number }[] };
            if (b.entries?.length) batches.push([Number(b.entries[0].lsn), Number(b.entries[b.entries.length - 1].lsn), t]);
            for (const e of b.entries ?? []) commits.push([Number(e.lsn), e.ts]);
          } catch {
            // Not a batch: nothing to record.
          }
        },
      })
    : undefined;
  await nc.flush();
  parentPort!.postMessage({ ready: true });
  while (!stopRequested) await sleep(20);
  sub.unsubscribe();
  logSub?.unsubscribe();
  await nc.close();
  return { acks, batches, commits };
}

if (parentPort) {
  parentPort.on('message', (m: unknown) => {
    if (m === 'stop') stopRequested = true;
  });
  const d = workerData as WorkerData;
  const run = d.kind === 'http-writer' ? httpWriter(d) : d.kind === 'pg-writer' ? pgWriter(d) : ackListener(d);
  run.then(
    (result) => parentPort!.postMessage({ result }),
    (e: Error) => parentPort!.postMessage({ error: e.stack ?? e.message }),
  );
}
