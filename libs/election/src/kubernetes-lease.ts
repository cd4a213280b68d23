/**
 * {@link Leaser} on a Kubernetes `coordination.k8s.io/v1` Lease, through @kubernetes/client-node.
 *
 * Mapping (one Lease object per election, e.g. `<cluster>-leader`):
 * - holder      ↔ spec.holderIdentity (the pod name; absent or "" = released)
 * - epoch       ↔ spec.leaseTransitions
 * - renewedAtMs ↔ spec.renewTime (a MicroTime); spec.acquireTime is set when the holder changes
 * - ttlMs       ↔ spec.leaseDurationSeconds (rounded up, for kubectl and other readers) and the
 *                 annotation `flotilla.io/ttl-ms`, which keeps the exact value and wins on read
 * - revision    ↔ metadata.resourceVersion
 *
 * compareAndSwap is a create when `expected` is null and otherwise a replace (PUT) carrying
 * `expected.revision` as metadata.resourceVersion, which the API server accepts only if the object
 * is unchanged: that is the compare-and-swap. A Kubernetes Lease is not a fence by itself (nothing
 * stops a deposed holder from acting); the election layer keeps epoch fencing and the leader's
 * self-demotion deadline on top of this backend.
 *
 * Errors: 409 (conflict, already exists) and 404 on replace (deleted since `expected`) →
 * {@link LeaseConflictError}; anything else (network, timeout, 403, 5xx) → {@link LeaseUnavailableError}.
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { ConfigurationOptions, CoordinationV1Api, KubeConfig, ObservableMiddleware, V1Lease } from '@kubernetes/client-node';
import { LeaseConflictError, LeaseProposal, LeaseRecord, Leaser, LeaseUnavailableError, LeaseWatch } from './lease';

/**
 * @kubernetes/client-node 1.x is an ES module. It is loaded on first use, not when this file is
 * imported, so that code (and jest projects) importing @flotilla/election without using
 * Kubernetes never load it; plain Node >= 20.19 `require`s ES modules, and the jest `k8s` project
 * transforms it.
 */
export function kubernetesClient(): typeof import('@kubernetes/client-node') {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('@kubernetes/client-node') as typeof import('@kubernetes/client-node');
}

/** Annotation that keeps the exact TTL in milliseconds (leaseDurationSeconds is whole seconds). */
export const TTL_MS_ANNOTATION = 'flotilla.io/ttl-ms';
/** Default resync period of a watch: the callback sees the current value at least this often. */
export const DEFAULT_WATCH_RESYNC_MS = 1000;
/** Default limit on one API request; a hung request is reported as unavailable after this. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 2000;
/** Resyncs in a row that find a revision the watch did not deliver before the watch is restarted. */
const WATCH_STALE_RESYNCS = 2;
/** Pause before re-opening a watch that ended or failed. */
const WATCH_RETRY_MS = 200;
/** Field manager recorded in managedFields for our writes. */
export const FIELD_MANAGER = 'flotilla';
/** Where a pod finds its namespace when running in-cluster. */
const IN_CLUSTER_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

export interface KubernetesLeaserOptions {
  /** Lease object name, e.g. `flotilla-leader`. */
  name: string;
  /** Namespace of the Lease. */
  namespace: string;
  /** Connection to the API server (see {@link loadKubeConfig}). */
  kubeConfig: KubeConfig;
  /** Wall clock for renewTime/acquireTime, ms since the Unix epoch. Default Date.now. */
  now?: () => number;
  /** Resync period of {@link KubernetesLeaser.watch}. */
  resyncMs?: number;
  /** Limit on each API request. */
  requestTimeoutMs?: number;
}

/**
 * Loads the connection settings: the kubeconfig file `kubeconfigPath` if given; else in a pod
 * (KUBERNETES_SERVICE_HOST set) without KUBECONFIG, the pod's service-account token (in-cluster);
 * else KUBECONFIG (several files separated by ':' are merged, the first one's context wins), else
 * ~/.kube/config. Throws when none applies, rather than guessing http://localhost:8080.
 */
export function loadKubeConfig(kubeconfigPath?: string, env: NodeJS.ProcessEnv = process.env): KubeConfig {
  const { KubeConfig } = kubernetesClient();
  const kc = new KubeConfig();
  const files = kubeconfigPath ? [kubeconfigPath] : (env.KUBECONFIG ?? '').split(delimiter).filter(Boolean);
  if (files.length === 0 && env.KUBERNETES_SERVICE_HOST) {
    kc.loadFromCluster();
    return kc;
  }
  if (files.length === 0) {
    const home = env.HOME ?? homedir();
    const fallback = join(home, '.kube', 'config');
    if (!existsSync(fallback)) {
      throw new LeaseUnavailableError('no Kubernetes connection: set KUBECONFIG, create ~/.kube/config, or run in a pod');
    }
    files.push(fallback);
  }
  kc.loadFromFile(files[0]);
  for (const file of files.slice(1)) {
    const more = new KubeConfig();
    more.loadFromFile(file);
    kc.mergeConfig(more, true); // as kubectl: the first file that sets current-context wins
  }
  return kc;
}

/**
 * The namespace to use: POD_NAMESPACE (downward API), else the in-cluster service-account
 * namespace file, else the kubeconfig's current context namespace, else `default`.
 */
export function currentNamespace(kc: KubeConfig, env: NodeJS.ProcessEnv = process.env): string {
  if (env.POD_NAMESPACE) return env.POD_NAMESPACE;
  try {
    const fromFile = readFileSync(IN_CLUSTER_NAMESPACE_FILE, 'utf8').trim();
    if (fromFile) return fromFile;
  } catch {
    /* not in a pod */
  }
  const context = kc.getContextObject(kc.getCurrentContext());
  return context?.namespace || 'default';
}

/** What a Lease elects: the cluster's leader replica, or its active monitor. */
export type KubernetesLeaseRole = 'leader' | 'monitor';

/**
 * Name of a cluster's Lease: `<cluster>-leader` (holder = leader replica pod) or
 * `<cluster>-monitor` (holder = active monitor pod). One convention for replicas, monitor, docs.
 */
export function kubernetesLeaseName(cluster: string, role: KubernetesLeaseRole): string {
  return `${cluster}-${role}`;
}

/** Options of {@link KubernetesLeaser.fromEnvironment}. */
export interface KubernetesEnvironmentOptions {
  /** A kubeconfig file; default: KUBECONFIG / ~/.kube/config, or in-cluster in a pod. */
  kubeconfigPath?: string;
  /** Namespace; default: {@link currentNamespace}. */
  namespace?: string;
  env?: NodeJS.ProcessEnv;
}

export class KubernetesLeaser implements Leaser {
  readonly kind = 'kubernetes';
  /** Lease object name. */
  readonly name: string;
  /** Namespace of the Lease object. */
  readonly namespace: string;
  private readonly api: CoordinationV1Api;
  private readonly now: () => number;
  private readonly resyncMs: number;
  private readonly requestTimeoutMs: number;
  /** Last Lease object seen, to carry acquireTime, labels and foreign annotations across a replace. */
  private lastSeen: V1Lease | null = null;
  private readonly watches = new Set<LeaseWatch>();

  constructor(private readonly options: KubernetesLeaserOptions) {
    this.name = options.name;
    this.namespace = options.namespace;
    this.api = options.kubeConfig.makeApiClient(kubernetesClient().CoordinationV1Api);
    this.now = options.now ?? Date.now;
    this.resyncMs = options.resyncMs ?? DEFAULT_WATCH_RESYNC_MS;
    this.requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  }

  /**
   * A leaser on Lease `name`, connected the way a Flotilla process runs: in a pod through its
   * service-account token, elsewhere through the kubeconfig (see {@link loadKubeConfig}).
   */
  static fromEnvironment(
    name: string,
    options: KubernetesEnvironmentOptions & Pick<KubernetesLeaserOptions, 'now' | 'resyncMs' | 'requestTimeoutMs'> = {},
  ): KubernetesLeaser {
    const kubeConfig = loadKubeConfig(options.kubeconfigPath, options.env);
    const namespace = options.namespace ?? currentNamespace(kubeConfig, options.env);
    return new KubernetesLeaser({ name, namespace, kubeConfig, now: options.now, resyncMs: options.resyncMs, requestTimeoutMs: options.requestTimeoutMs });
  }

  private get where(): string {
    return `lease ${this.options.namespace}/${this.options.name}`;
  }

  async read(): Promise<LeaseRecord | null> {
    try {
      const lease = await this.api.readNamespacedLease({ name: this.options.name, namespace: this.options.namespace }, this.requestOptions());
      this.lastSeen = lease;
      return toRecord(lease);
    } catch (err) {
      if (statusOf(err) === 404) return null;
      throw new LeaseUnavailableError(`read ${this.where}: ${describe(err)}`, { cause: err });
    }
  }

  async compareAndSwap(expected: LeaseRecord | null, next: LeaseProposal): Promise<LeaseRecord> {
    assertProposal(next);
    const body = this.leaseBody(expected, next);
    try {
      const stored =
        expected === null
          ? await this.api.createNamespacedLease({ namespace: this.options.namespace, body, fieldManager: FIELD_MANAGER }, this.requestOptions())
          : await this.api.replaceNamespacedLease(
              { name: this.options.name, namespace: this.options.namespace, body, fieldManager: FIELD_MANAGER },
              this.requestOptions(),
            );
      this.lastSeen = stored;
      return toRecord(stored);
    } catch (err) {
      const status = statusOf(err);
      if (status === 409 || (status === 404 && expected !== null)) {
        throw new LeaseConflictError(`${this.where} changed since revision ${expected?.revision ?? 'none'} (HTTP ${status})`, { cause: err });
      }
      throw new LeaseUnavailableError(`write ${this.where}: ${describe(err)}`, { cause: err });
    }
  }

  /**
   * Push: list-then-watch on this one Lease (fieldSelector metadata.name), the informer pattern:
   * the list gives the current value and a resourceVersion, the watch from that resourceVersion
   * delivers each later change at once with no gap. (A watch without a resourceVersion would also
   * need the API server's RequestWatchProgress storage feature, which etcd < 3.4.31 lacks.) A watch
   * that ends, fails (410 Gone included) or does not open within requestTimeoutMs is re-listed and
   * re-opened. Pull: a read every resyncMs; when two resyncs in a row find a revision the stream
   * did not deliver, the stream is presumed stuck on a silent connection and restarted.
   * Callers may see the same revision more than once.
   */
  watch(onChange: (record: LeaseRecord | null) => void): LeaseWatch {
    let stopped = false;
    /** Incremented for each stream opened; callbacks of older streams are ignored. */
    let generation = 0;
    let abort: AbortController | null = null;
    let retry: NodeJS.Timeout | null = null;
    /** Revision last delivered by list or watch (not by resync). */
    let streamRevision: string | null = null;
    let staleResyncs = 0;
    const emit = (record: LeaseRecord | null) => {
      if (!stopped) onChange(record);
    };
    const fromStream = (record: LeaseRecord | null) => {
      streamRevision = record?.revision ?? null;
      staleResyncs = 0;
      emit(record);
    };
    const fieldSelector = `metadata.name=${this.options.name}`;
    const path = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(this.options.namespace)}/leases`;
    const restart = () => {
      generation++; // whatever the current stream still says is ignored from now on
      abort?.abort();
      abort = null;
      if (stopped || retry) return;
      retry = setTimeout(() => {
        retry = null;
        void open();
      }, WATCH_RETRY_MS);
    };
    const open = async () => {
      if (stopped) return;
      const mine = ++generation;
      let resourceVersion: string | undefined;
      try {
        const list = await this.api.listNamespacedLease({ namespace: this.options.namespace, fieldSelector }, this.requestOptions());
        if (mine !== generation) return;
        resourceVersion = list.metadata?.resourceVersion;
        const lease = list.items[0] ?? null;
        if (lease) this.lastSeen = lease;
        fromStream(lease ? toRecord(lease) : null);
      } catch {
        if (mine === generation) restart();
        return;
      }
      // Watch.watch resolves only once the response headers arrive: bound that wait.
      const openTimer = setTimeout(() => {
        if (mine === generation && abort === null) restart();
      }, this.requestTimeoutMs);
      new (kubernetesClient().Watch)(this.options.kubeConfig)
        .watch(
          path,
          { fieldSelector, resourceVersion, allowWatchBookmarks: true },
          (phase, object: V1Lease) => {
            if (mine !== generation) return;
            if (phase === 'ADDED' || phase === 'MODIFIED') {
              this.lastSeen = object;
              fromStream(toRecord(object));
            } else if (phase === 'DELETED') {
              fromStream(null);
            }
            // BOOKMARK carries no lease; ERROR (e.g. 410 Gone) is followed by the end of the stream.
          },
          () => {
            if (mine === generation) restart();
          },
        )
        .then(
          (controller) => {
            clearTimeout(openTimer);
            if (mine === generation && !stopped) abort = controller;
            else controller.abort();
          },
          () => {
            clearTimeout(openTimer);
            if (mine === generation) restart();
          },
        );
    };
    void open();
    const resync = setInterval(() => {
      this.read().then((record) => {
        if ((record?.revision ?? null) !== streamRevision && ++staleResyncs >= WATCH_STALE_RESYNCS) {
          staleResyncs = 0;
          restart();
        }
        emit(record);
      }, () => undefined);
    }, this.resyncMs);
    const handle: LeaseWatch = {
      stop: () => {
        if (stopped) return;
        stopped = true;
        generation++;
        clearInterval(resync);
        if (retry) clearTimeout(retry);
        abort?.abort();
        this.watches.delete(handle);
      },
    };
    this.watches.add(handle);
    return handle;
  }

  /** Stops every watch still open; the leaser must not be used afterwards. */
  async close(): Promise<void> {
    for (const w of [...this.watches]) w.stop();
  }

  private leaseBody(expected: LeaseRecord | null, next: LeaseProposal): V1Lease {
    const { V1MicroTime } = kubernetesClient();
    const nowMs = this.now();
    const previous = expected !== null && this.lastSeen?.metadata?.resourceVersion === expected.revision ? this.lastSeen : null;
    const holderChanged = expected === null || expected.holder !== next.holder;
    const previousAcquire = previous?.spec?.acquireTime ? new Date(previous.spec.acquireTime).getTime() : null;
    const acquireMs = holderChanged || previousAcquire === null ? nowMs : previousAcquire;
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: {
        name: this.options.name,
        namespace: this.options.namespace,
        labels: previous?.metadata?.labels,
        annotations: { ...(previous?.metadata?.annotations ?? {}), [TTL_MS_ANNOTATION]: String(next.ttlMs) },
        ...(expected !== null ? { resourceVersion: expected.revision } : {}),
      },
      spec: {
        holderIdentity: next.holder ?? undefined,
        leaseDurationSeconds: Math.max(1, Math.ceil(next.ttlMs / 1000)),
        leaseTransitions: next.epoch,
        acquireTime: next.holder === null ? undefined : new V1MicroTime(acquireMs),
        renewTime: new V1MicroTime(nowMs),
      },
    };
  }

  /** Per-request options: abort a request that takes longer than requestTimeoutMs. */
  private requestOptions(): ConfigurationOptions<ObservableMiddleware> {
    return withRequestTimeout(this.requestTimeoutMs);
  }
}

/**
 * Per-request options that abort a request taking longer than `timeoutMs` (after `base`'s own
 * middleware, e.g. a Content-Type header): a request stuck on a silent network must not hold
 * whoever waits on it for the minutes TCP takes to give up.
 */
export function withRequestTimeout(timeoutMs: number, base?: ConfigurationOptions<ObservableMiddleware>): ConfigurationOptions<ObservableMiddleware> {
  const { Observable } = kubernetesClient();
  return {
    middleware: [
      ...(base?.middleware ?? []),
      {
        pre: (context) => {
          context.setSignal(AbortSignal.timeout(timeoutMs));
          return new Observable(Promise.resolve(context));
        },
        post: (response) => new Observable(Promise.resolve(response)),
      },
    ],
    middlewareMergeStrategy: 'append',
  };
}

/** Converts a stored Lease to the backend-neutral record. */
export function toRecord(lease: V1Lease): LeaseRecord {
  const spec = lease.spec ?? {};
  const annotated = Number(lease.metadata?.annotations?.[TTL_MS_ANNOTATION]);
  const ttlMs = Number.isInteger(annotated) && annotated > 0 ? annotated : (spec.leaseDurationSeconds ?? 0) * 1000;
  const renewed = spec.renewTime ?? spec.acquireTime;
  return {
    holder: spec.holderIdentity ? spec.holderIdentity : null,
    epoch: spec.leaseTransitions ?? 0,
    renewedAtMs: renewed ? new Date(renewed).getTime() : 0,
    ttlMs,
    revision: lease.metadata?.resourceVersion ?? '',
  };
}

function assertProposal(next: LeaseProposal): void {
  if (!Number.isInteger(next.epoch) || next.epoch < 0 || next.epoch > 2 ** 31 - 1) {
    throw new RangeError(`lease epoch must be an int32 >= 0 (leaseTransitions), got ${next.epoch}`);
  }
  if (!Number.isFinite(next.ttlMs) || next.ttlMs <= 0) throw new RangeError(`lease ttlMs must be > 0, got ${next.ttlMs}`);
}

function statusOf(err: unknown): number | null {
  return err instanceof kubernetesClient().ApiException ? (err as { code: number }).code : null;
}

function describe(err: unknown): string {
  const status = statusOf(err);
  if (status !== null) {
    let body = (err as { body?: unknown }).body;
    if (typeof body === 'string') {
      try {
        body = JSON.parse(body);
      } catch {
        /* plain text body */
      }
    }
    const message = typeof body === 'object' && body !== null && 'message' in body ? String(body.message) : String(body ?? '');
    return `HTTP ${status}: ${message}`.trim();
  }
  if (err instanceof Error) return err.name === 'AbortError' ? 'request timed out' : err.message;
  return String(err);
}
