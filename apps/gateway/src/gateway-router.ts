/**
 * Routing of client requests to replicas over request/reply: writes to whoever subscribes to
 * `write` (the leader alone does), reads to the node the ClusterView picks for the consistency.
 * Plain TypeScript: NATS comes in as a {@link Requester}, time as a {@link Clock}.
 *
 * Retry rules for writes (a write must never be applied twice):
 * - with an idempotencyKey, NOT_LEADER / NO_LEADER / LEASE_EXPIRED replies and transport failures are retried with
 *   backoff until `requestTimeoutMs` is spent: the leader recognises the key and replays its answer;
 * - without one, only a request that certainly reached nobody (no responders, not connected) is
 *   resent; anything else is reported to the client;
 * - a keyed attempt still waiting when a leader of a newer epoch shows up in the heartbeats is
 *   abandoned and sent again at once (to the new leader): the node it went to was deposed or died
 *   with the request, and waiting out the whole timeout for its answer would stretch every
 *   failover by requestTimeoutMs for the clients caught in it. Its late answer, if any, is ignored.
 */
import {
  decodeEnvelope,
  Durability,
  ErrorCode,
  FlotillaError,
  parseLsn,
  PROTOCOL_VERSION,
  ProtocolError,
  QueryReply,
  QueryRequest,
  SqlValue,
  Statement,
  Subjects,
  throwIfError,
  WriteReply,
  WriteRequest,
  encode,
} from '@flotilla/protocol';
import type { Clock, Logger } from '@flotilla/logging';
import type { ClusterView, ReadConsistency } from '../../../libs/replication/src/cluster-view';
import { unreachableDurability } from '../../../libs/replication/src/sync-tracker';
import { RequestFailure, RequestFailureKind, Requester } from './requester';

/** First pause between write retries; doubles each time up to {@link WRITE_RETRY_MAX_DELAY_MS}. */
export const WRITE_RETRY_FIRST_DELAY_MS = 50;
export const WRITE_RETRY_MAX_DELAY_MS = 500;
/**
 * A retry is only sent with at least this much of the budget left: a shorter attempt could only
 * time out, turning a certain "not applied" (no responders) into an uncertain answer.
 */
export const WRITE_ATTEMPT_MIN_MS = 50;
/** How often a waiting keyed write looks for a leader of a newer epoch in the cluster view. */
export const LEADER_CHANGE_POLL_MS = 25;
/** Nodes tried at most for one read whose node did not answer (any/bounded). */
export const READ_ATTEMPTS_MAX = 3;
/** Extra time a waiting follower gets beyond readWaitMs to send its answer. */
export const READ_WAIT_MARGIN_MS = 250;

export interface GatewayRouterOptions {
  subjects: Subjects;
  view: ClusterView;
  requester: Requester;
  clock: Clock;
  logger: Logger;
  /** Total time budget of one client request, retries included. */
  requestTimeoutMs: number;
  /** How long a follower may wait for minLsn (read-your-writes) before the leader is asked. */
  readWaitMs: number;
}

export interface ExecuteInput {
  statements: Statement[];
  idempotencyKey?: string;
  durability?: Durability;
}

export interface QueryInput {
  sql: string;
  params?: SqlValue[] | Record<string, SqlValue>;
  consistency: ReadConsistency;
  /** Decimal LSN string (read-your-writes). */
  minLsn?: string;
  /** With minLsn: the epoch of that write; a node whose history has another epoch there refuses (STALE_EPOCH). */
  minEpoch?: number;
  maxLagMs?: number;
}

/**
 * Replies to a keyed write that are retried: the node is not, or no longer, a leader that can
 * vouch for it. The write may have been committed there (LEASE_EXPIRED after its commit or its
 * wait; NOT_LEADER when the role stopped before it was durable): only a keyed write is retried,
 * and the next leader answers the retry from the key if it has it, so it is applied at most once.
 */
const RETRYABLE_WRITE_CODES: ReadonlySet<string> = new Set([ErrorCode.NOT_LEADER, ErrorCode.NO_LEADER, ErrorCode.LEASE_EXPIRED]);
/** Replies after which a read-your-writes read goes to the leader instead (not there yet, or seeding). */
const FALLBACK_READ_CODES: ReadonlySet<string> = new Set([ErrorCode.TIMEOUT, ErrorCode.NO_REPLICA, ErrorCode.UNAVAILABLE]);
/** Replies after which an any/bounded read tries another node (this one is starting or seeding). */
const NEXT_NODE_READ_CODES: ReadonlySet<string> = new Set([ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT]);

export class GatewayRouter {
  constructor(private readonly o: GatewayRouterOptions) {
    if (!(o.requestTimeoutMs > 0)) throw new RangeError(`requestTimeoutMs must be > 0, got ${o.requestTimeoutMs}`);
  }

  /** Sends one write transaction to the leader; resolves with its reply or throws FlotillaError. */
  async execute(input: ExecuteInput): Promise<WriteReply> {
    this.refuseUnreachableDurability(input.durability);
    const request: WriteRequest = { type: 'write', v: PROTOCOL_VERSION, statements: input.statements };
    if (input.idempotencyKey !== undefined) request.idempotencyKey = input.idempotencyKey;
    if (input.durability !== undefined) request.durability = input.durability;
    const data = encode(request);
    const keyed = input.idempotencyKey !== undefined;
    const deadline = this.o.clock.monotonic() + this.o.requestTimeoutMs;
    let delayMs = WRITE_RETRY_FIRST_DELAY_MS;
    let failure: FlotillaError | undefined;
    // Once an attempt may have run (a timeout, an abandoned attempt, a refusal that can come after
    // the commit), no later "never delivered" makes the write certainly not applied.
    let fateUnknown = false;
    for (let attempt = 1; ; attempt++) {
      const remainingMs = deadline - this.o.clock.monotonic();
      if (failure && remainingMs < WRITE_ATTEMPT_MIN_MS) throw failure;
      let retryable: boolean;
      try {
        const request = this.o.requester.request(this.o.subjects.write, data, Math.max(1, remainingMs));
        const reply = keyed ? await this.unlessNewerLeader(request) : await request;
        return decodeWriteReply(reply);
      } catch (err) {
        if (err instanceof RequestFailure) {
          fateUnknown ||= !err.neverDelivered;
          failure = noLeaderError(err, this.o.requestTimeoutMs, keyed, fateUnknown);
          retryable = err.neverDelivered || keyed;
        } else if (err instanceof FlotillaError) {
          fateUnknown ||= err.code === ErrorCode.LEASE_EXPIRED || err.code === ErrorCode.NOT_LEADER;
          // Committed before the refusal (the leader says so): what the client may do depends on
          // whether it sent a key, which only the gateway knows.
          failure = err.committed
            ? new FlotillaError(err.code, `${err.message}: ${keyed ? 'retry with the same idempotencyKey' : 'it may have been applied: send an idempotencyKey to retry writes safely'}`, { cause: err, committed: true })
            : err;
          retryable = keyed && RETRYABLE_WRITE_CODES.has(err.code);
        } else {
          throw err;
        }
      }
      const leftMs = deadline - this.o.clock.monotonic();
      if (!retryable || leftMs < WRITE_ATTEMPT_MIN_MS) throw failure;
      this.o.logger.debug('write retry', { attempt, code: failure.code, delayMs, keyed });
      await this.sleep(Math.min(delayMs, leftMs - WRITE_ATTEMPT_MIN_MS));
      delayMs = Math.min(delayMs * 2, WRITE_RETRY_MAX_DELAY_MS);
    }
  }

  /**
   * `{replicas: n}` above the number of replicas the heartbeats know of (down ones included, for
   * five minutes) cannot be met: refused before it is sent, so nothing is applied. The leader judges
   * it too, from the heartbeats it heard (its own API has no gateway in front); asking here first
   * saves the round trip and answers while there is no leader.
   * Until the view has heard heartbeats for long enough to have heard every live node (a few
   * heartbeat intervals from the first one, however late NATS connected): the leader's wait decides.
   */
  private refuseUnreachableDurability(durability: ExecuteInput['durability']): void {
    if (typeof durability !== 'object' || !this.o.view.hasHeardEveryLiveNode()) return;
    const refusal = unreachableDurability(durability, this.o.view.nodes().map((n) => n.name));
    if (refusal) throw refusal;
  }

  /**
   * Resolves or rejects as `request` does, unless a leader of an epoch above the current one shows
   * up first: then rejects with a RequestFailure of kind OTHER (fate unknown, so only keyed writes
   * may use this). Its own answer is then dropped.
   */
  private unlessNewerLeader(request: Promise<Uint8Array>): Promise<Uint8Array> {
    const epoch = this.o.view.summary().epoch;
    return new Promise<Uint8Array>((resolve, reject) => {
      let timer: { cancel(): void } | undefined;
      let settled = false;
      const finish = (f: () => void) => {
        if (settled) return;
        settled = true;
        timer?.cancel();
        f();
      };
      const poll = () => {
        const leader = this.o.view.leader();
        if (leader && leader.epoch > epoch) {
          this.o.logger.debug('write attempt abandoned: newer leader', { leader: leader.name, epoch: leader.epoch, sentInEpoch: epoch });
          finish(() => reject(new RequestFailure(RequestFailureKind.OTHER, `abandoned: ${leader.name} leads epoch ${leader.epoch} (sent in epoch ${epoch})`)));
          return;
        }
        timer = this.o.clock.setTimeout(poll, LEADER_CHANGE_POLL_MS);
      };
      request.then(
        (reply) => finish(() => resolve(reply)),
        (err) => finish(() => reject(err)),
      );
      timer = this.o.clock.setTimeout(poll, LEADER_CHANGE_POLL_MS);
    });
  }

  /** Runs one read on a node chosen for its consistency; throws FlotillaError. */
  async query(input: QueryInput): Promise<QueryReply> {
    const deadline = this.o.clock.monotonic() + this.o.requestTimeoutMs;
    switch (input.consistency) {
      case 'strong':
        return this.queryStrong(input, deadline);
      case 'read-your-writes':
        return input.minLsn === undefined ? this.queryAnyNode(input, deadline) : this.queryReadYourWrites(input, input.minLsn, deadline);
      case 'any':
      case 'bounded':
        return this.queryAnyNode(input, deadline);
    }
  }

  private async queryStrong(input: QueryInput, deadline: number): Promise<QueryReply> {
    const leader = this.o.view.leader();
    if (!leader) throw new FlotillaError(ErrorCode.NO_LEADER, 'no leader is known for a strong read; retry shortly');
    try {
      return await this.ask(leader.name, { ...this.baseQuery(input), requireLeader: true }, deadline - this.o.clock.monotonic());
    } catch (err) {
      if (err instanceof RequestFailure) {
        throw new FlotillaError(ErrorCode.NO_LEADER, `leader ${leader.name} did not answer (${err.kind}); retry shortly`, { cause: err });
      }
      throw err;
    }
  }

  /** any / bounded (and read-your-writes without minLsn): another node when one does not answer. */
  private async queryAnyNode(input: QueryInput, deadline: number): Promise<QueryReply> {
    const tried: string[] = [];
    let last: RequestFailure | FlotillaError | undefined;
    while (tried.length < READ_ATTEMPTS_MAX) {
      const node = this.o.view.pickForRead({ consistency: input.consistency, maxLagMs: input.maxLagMs, exclude: tried });
      if (node === undefined) break;
      const remainingMs = deadline - this.o.clock.monotonic();
      if (remainingMs <= 0) break;
      try {
        return await this.ask(node, this.baseQuery(input), remainingMs);
      } catch (err) {
        const nextNode = err instanceof RequestFailure || (err instanceof FlotillaError && NEXT_NODE_READ_CODES.has(err.code));
        if (!nextNode) throw err;
        this.o.logger.debug('read node could not serve', { node, why: err instanceof RequestFailure ? err.kind : err.code });
        tried.push(node);
        last = err;
      }
    }
    const what = input.consistency === 'bounded' ? `with lag <= ${input.maxLagMs} ms` : 'that is healthy';
    const why = last ? ` (tried ${tried.join(', ')}: ${last instanceof RequestFailure ? last.kind : last.message})` : '';
    throw new FlotillaError(ErrorCode.NO_REPLICA, `no replica ${what} can serve this read${why}; retry shortly`, { cause: last });
  }

  /** A follower at minLsn (waiting up to readWaitMs); on TIMEOUT / NO_REPLICA / silence, the leader. */
  private async queryReadYourWrites(input: QueryInput, minLsn: string, deadline: number): Promise<QueryReply> {
    const node = this.o.view.pickForRead({ consistency: 'read-your-writes', minLsn });
    if (node === undefined) throw new FlotillaError(ErrorCode.NO_REPLICA, `no replica can serve a read at LSN ${minLsn}; retry shortly`);
    const request: QueryRequest = { ...this.baseQuery(input), minLsn, waitMs: this.o.readWaitMs };
    const leaderName = this.o.view.leader()?.name;
    if (node === leaderName) return this.ask(node, request, deadline - this.o.clock.monotonic());
    try {
      const waitBudgetMs = Math.min(this.o.readWaitMs + READ_WAIT_MARGIN_MS, deadline - this.o.clock.monotonic());
      return await this.ask(node, request, waitBudgetMs);
    } catch (err) {
      const fallBack = err instanceof RequestFailure || (err instanceof FlotillaError && FALLBACK_READ_CODES.has(err.code));
      if (!fallBack) throw err;
      const leader = this.o.view.leader();
      if (!leader) throw err instanceof FlotillaError ? err : new FlotillaError(ErrorCode.NO_REPLICA, `replica ${node} did not answer and no leader is known`, { cause: err });
      this.o.logger.debug('read-your-writes falls back to the leader', { node, leader: leader.name, minLsn });
      return this.ask(leader.name, request, deadline - this.o.clock.monotonic());
    }
  }

  private baseQuery(input: QueryInput): QueryRequest {
    const q: QueryRequest = { type: 'query', v: PROTOCOL_VERSION, sql: input.sql };
    if (input.params !== undefined) q.params = input.params;
    // The node checks a bound itself when it serves: the view's lag is a heartbeat old, and a node
    // that is paused or cut off gets the request late, or holds data it cannot vouch for.
    // (Validation lets maxLagMs through only with consistency bounded.)
    if (input.maxLagMs !== undefined) q.maxLagMs = input.maxLagMs;
    // A strong read with minLsn (monotonic reads across a failover) is checked by the leader too.
    if (input.minLsn !== undefined) q.minLsn = input.minLsn;
    if (input.minEpoch !== undefined) q.minEpoch = input.minEpoch;
    return q;
  }

  /** One request to `read.<node>`: the decoded reply, a FlotillaError from it, or RequestFailure. */
  private async ask(node: string, request: QueryRequest, timeoutMs: number): Promise<QueryReply> {
    if (timeoutMs <= 0) throw new FlotillaError(ErrorCode.TIMEOUT, `no answer within ${this.o.requestTimeoutMs} ms`);
    const reply = await this.o.requester.request(this.o.subjects.read(node), encode(request), timeoutMs);
    return decodeQueryReply(reply, node);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.o.clock.setTimeout(resolve, ms));
  }
}

function noLeaderError(err: RequestFailure, requestTimeoutMs: number, keyed: boolean, fateUnknown = false): FlotillaError {
  if (err.neverDelivered && fateUnknown) {
    return new FlotillaError(ErrorCode.NO_LEADER, `no leader is available (${err.kind}) after an attempt that may have been applied; ${keyed ? 'retry with the same idempotencyKey' : 'it may or may not have been applied'}`, { cause: err });
  }
  if (err.neverDelivered) {
    return new FlotillaError(ErrorCode.NO_LEADER, `no leader is available (${err.kind}); the write was not applied, retry shortly`, { cause: err });
  }
  const advice = keyed ? 'retry with the same idempotencyKey' : 'it may or may not have been applied; send an idempotencyKey to retry safely';
  return new FlotillaError(ErrorCode.NO_LEADER, `no leader answered within ${requestTimeoutMs} ms (${err.kind}); ${advice}`, { cause: err });
}

function badReply(from: string, err: unknown): FlotillaError {
  return new FlotillaError(ErrorCode.INTERNAL, `bad reply from ${from}: ${(err as Error).message}`, { cause: err });
}

/** Decodes the leader's answer to a write; ErrorReply → FlotillaError. */
export function decodeWriteReply(data: Uint8Array): WriteReply {
  try {
    const m = decodeEnvelope(data);
    throwIfError(m);
    if (m.type !== 'write-reply') throw new ProtocolError(`expected write-reply, got ${m.type}`);
    parseLsn(m.lsn, 'lsn');
    if (typeof m.epoch !== 'number' || !Number.isSafeInteger(m.epoch)) throw new ProtocolError('bad epoch');
    if (!Array.isArray(m.results)) throw new ProtocolError('results must be an array');
    return m as unknown as WriteReply;
  } catch (err) {
    if (err instanceof FlotillaError) throw err;
    throw badReply('the leader', err);
  }
}

/** Decodes a replica's answer to a read; ErrorReply → FlotillaError. */
export function decodeQueryReply(data: Uint8Array, node: string): QueryReply {
  try {
    const m = decodeEnvelope(data);
    throwIfError(m);
    if (m.type !== 'query-reply') throw new ProtocolError(`expected query-reply, got ${m.type}`);
    parseLsn(m.lsn, 'lsn');
    if (!Array.isArray(m.rows)) throw new ProtocolError('rows must be an array');
    if (typeof m.servedBy !== 'string') throw new ProtocolError('servedBy must be a string');
    return m as unknown as QueryReply;
  } catch (err) {
    if (err instanceof FlotillaError) throw err;
    throw badReply(node, err);
  }
}
