/**
 * Main-thread side of the load generators: starts bench/load-worker.js threads, splits clients
 * among them, merges what they report. The main thread only waits; it never sends a request itself.
 */
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { AckListenerData, AckListenerResult, HttpWriterData, PgWriterData, WriterResult } from './load-worker';

/** Clients per load thread: 64 clients run on 2 threads, fewer on one. */
export const CLIENTS_PER_THREAD_MAX = 32;
/** A worker that has not reported this long after its own deadline is a bug: fail loudly. */
const WORKER_GRACE_MS = 60_000;

const WORKER_FILE = path.join(__dirname, 'load-worker.js');

/** A started worker thread: `stop()` asks it to finish early; `result` settles with its report. */
export interface RunningWorker<T> {
  ready: Promise<void>;
  result: Promise<T>;
  stop(): void;
}

export function startWorker<T>(data: HttpWriterData | PgWriterData | AckListenerData, boundMs: number): RunningWorker<T> {
  const worker = new Worker(WORKER_FILE, { workerData: data });
  let markReady!: () => void;
  const ready = new Promise<void>((r) => (markReady = r));
  const result = new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      void worker.terminate();
      reject(new Error(`${data.kind} worker did not finish within ${boundMs + WORKER_GRACE_MS} ms`));
    }, boundMs + WORKER_GRACE_MS);
    worker.on('message', (m: { ready?: boolean; result?: T; error?: string }) => {
      if (m.ready) markReady();
      if (m.error) reject(new Error(`${data.kind} worker: ${m.error}`));
      if (m.result) resolve(m.result);
      if (m.result || m.error) {
        clearTimeout(timer);
        void worker.terminate();
      }
    });
    worker.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
  result.catch(() => undefined);
  return { ready, result, stop: () => worker.postMessage('stop') };
}

/** Merged report of several writer threads. */
export interface LoadResult extends WriterResult {
  clients: number;
  threads: number;
  /** measuredOk per second of the measured window. */
  throughputPerS: number;
  p50Ms: number;
  p99Ms: number;
}

type WriterData = Omit<HttpWriterData, 'keyStride'> | Omit<PgWriterData, 'keyStride'>;

/**
 * Runs `data.clients` clients spread over ⌈clients / {@link CLIENTS_PER_THREAD_MAX}⌉ threads (rate,
 * request bound and key ranges split among them); `onStarted` gets a handle to stop them early.
 */
export async function runWriters(data: WriterData, onStarted?: (stop: () => void) => void): Promise<LoadResult> {
  const threads = Math.max(1, Math.ceil(data.clients / CLIENTS_PER_THREAD_MAX));
  const workers: RunningWorker<WriterResult>[] = [];
  let given = 0;
  for (let t = 0; t < threads; t++) {
    const clients = Math.floor(data.clients / threads) + (t < data.clients % threads ? 1 : 0);
    workers.push(
      startWorker<WriterResult>(
        {
          ...data,
          clients,
          ratePerS: (data.ratePerS * clients) / data.clients,
          maxRequests: Math.ceil((data.maxRequests * clients) / data.clients),
          // Client c of a thread whose first client is the given-th overall writes keys
          // keyBase + given + c + k * clients: no two clients of the run share a key.
          keyBase: data.keyBase + given,
          keyStride: data.clients,
        } as HttpWriterData | PgWriterData,
        data.durationMs,
      ),
    );
    given += clients;
  }
  onStarted?.(() => workers.forEach((w) => w.stop()));
  const parts = await Promise.all(workers.map((w) => w.result));
  return mergeWriterResults(parts, data.clients);
}

export function mergeWriterResults(parts: WriterResult[], clients: number): LoadResult {
  const latenciesMs = parts.flatMap((p) => p.latenciesMs);
  const measuredMs = Math.max(...parts.map((p) => p.measuredMs));
  const merged: WriterResult = {
    ok: sum(parts.map((p) => p.ok)),
    failed: sum(parts.map((p) => p.failed)),
    measuredOk: sum(parts.map((p) => p.measuredOk)),
    measuredFailed: sum(parts.map((p) => p.measuredFailed)),
    measuredMs,
    latenciesMs,
    writes: parts.flatMap((p) => p.writes),
    requests: parts.flatMap((p) => p.requests),
    errorSamples: parts.flatMap((p) => p.errorSamples).slice(0, 5),
    startMs: Math.min(...parts.map((p) => p.startMs)),
    endMs: Math.max(...parts.map((p) => p.endMs)),
  };
  return {
    ...merged,
    clients,
    threads: parts.length,
    throughputPerS: measuredMs > 0 ? (merged.measuredOk * 1000) / measuredMs : 0,
    p50Ms: percentile(latenciesMs, 50),
    p99Ms: percentile(latenciesMs, 99),
  };
}

export function startAckListener(data: Omit<AckListenerData, 'kind'>, boundMs: number): RunningWorker<AckListenerResult> {
  return startWorker<AckListenerResult>({ kind: 'ack-listener', ...data }, boundMs);
}

export function sum(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}

/** Nearest-rank percentile (p in 0..100) of unsorted values; NaN when there are none. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1];
}
