/**
 * The admin operations of the REST API, as plain TypeScript over a {@link Requester}:
 * - switchover: ask the leader (control.<leader>) to stop writes, wait for the target to catch up
 *   and hand it the lease; the answer comes when it is done or failed.
 * - discarded: ask every known replica for the transactions it discarded when it rewound after a
 *   failover, and merge them by LSN; replicas that do not answer are listed, not fatal.
 */
import type { Logger } from '@flotilla/logging';
import {
  decodeEnvelope,
  DiscardedTransaction,
  encode,
  ErrorCode,
  FlotillaError,
  parseLsn,
  PROTOCOL_VERSION,
  ProtocolError,
  Subjects,
  SwitchoverReply,
  throwIfError,
} from '@flotilla/protocol';
import type { ClusterView } from '../../../libs/replication/src/cluster-view';
import { RequestFailure, RequestFailureKind, Requester } from './requester';

/** How long the leader gets to hand over (stop writes, wait for the target, write the lease). */
export const SWITCHOVER_TIMEOUT_MS = 10_000;
/** Extra time for the leader's answer to arrive after its own deadline. */
export const SWITCHOVER_REPLY_MARGIN_MS = 2000;
/** How long one replica gets to list its discarded transactions. */
export const DISCARDED_TIMEOUT_MS = 3000;

/** Answer of POST /v1/admin/switchover. */
export interface SwitchoverResult {
  from: string;
  to: string;
  epoch: number;
  lsn: string;
}

/** How long the leader gets to record a mode change. */
export const MODE_TIMEOUT_MS = 5000;

/** Answer of POST /v1/admin/mode. */
export interface ModeResult {
  mode: string;
  syncFollowers: number;
  syncPolicy: string;
  syncTimeoutMs: number;
  lsn: string;
}

/** A replica that did not answer GET /v1/admin/discarded, and why. */
export interface UnavailableNode {
  node: string;
  reason: string;
}

/** Answer of GET /v1/admin/discarded. */
export interface DiscardedResult {
  /** Every discarded transaction of every replica that answered, by LSN (then node). */
  discarded: DiscardedTransaction[];
  unavailable: UnavailableNode[];
}

export interface AdminOptions {
  subjects: Subjects;
  view: ClusterView;
  requester: Requester;
  logger: Logger;
  switchoverTimeoutMs?: number;
  discardedTimeoutMs?: number;
}

export class Admin {
  constructor(private readonly o: AdminOptions) {}

  /** Planned leader change to `to`; throws FlotillaError (NO_LEADER, BAD_REQUEST, CONFLICT, TIMEOUT, ...). */
  async switchover(to: string): Promise<SwitchoverResult> {
    const leader = this.o.view.leader();
    if (!leader) throw new FlotillaError(ErrorCode.NO_LEADER, 'no leader is known: a switchover needs a running leader (a failover may be in progress); retry shortly');
    const known = this.o.view.nodes().map((n) => n.name);
    if (!known.includes(to)) {
      throw new FlotillaError(ErrorCode.BAD_REQUEST, `invalid request: "${to}" is not a known replica (known: ${known.join(', ') || 'none'})`);
    }
    if (to === leader.name) throw new FlotillaError(ErrorCode.CONFLICT, `${to} already leads (epoch ${leader.epoch}); nothing to switch over`);
    const timeoutMs = this.o.switchoverTimeoutMs ?? SWITCHOVER_TIMEOUT_MS;
    const request = { type: 'switchover', v: PROTOCOL_VERSION, to, timeoutMs };
    this.o.logger.info('switchover requested', { from: leader.name, to, timeoutMs });
    let data: Uint8Array;
    try {
      data = await this.o.requester.request(this.o.subjects.control(leader.name), encode(request), timeoutMs + SWITCHOVER_REPLY_MARGIN_MS);
    } catch (err) {
      if (!(err instanceof RequestFailure)) throw err;
      if (err.kind === RequestFailureKind.TIMEOUT) {
        throw new FlotillaError(ErrorCode.TIMEOUT, `the switchover from ${leader.name} to ${to} did not answer within ${timeoutMs + SWITCHOVER_REPLY_MARGIN_MS} ms; check GET /v1/cluster for the outcome`, { cause: err });
      }
      throw new FlotillaError(ErrorCode.UNAVAILABLE, `leader ${leader.name} did not take the switchover request (${err.kind}); retry shortly`, { cause: err });
    }
    const reply = decodeSwitchoverReply(data, leader.name);
    this.o.logger.info('switchover done', { from: reply.from, to: reply.to, epoch: reply.epoch, lsn: reply.lsn });
    return { from: reply.from, to: reply.to, epoch: reply.epoch, lsn: reply.lsn };
  }

  /** Changes the replication mode on the leader (recorded in the log, so it is cluster-wide). */
  async setMode(change: { mode?: string; syncFollowers?: number; syncPolicy?: string; syncTimeoutMs?: number }): Promise<ModeResult> {
    const leader = this.o.view.leader();
    if (!leader) throw new FlotillaError(ErrorCode.NO_LEADER, 'no leader is known: the mode is changed on the leader; retry shortly');
    if (Object.values(change).every((v) => v === undefined)) {
      throw new FlotillaError(ErrorCode.BAD_REQUEST, 'invalid request: give at least one of mode, syncFollowers, syncPolicy, syncTimeoutMs');
    }
    let data: Uint8Array;
    try {
      data = await this.o.requester.request(this.o.subjects.control(leader.name), encode({ type: 'set-mode', v: PROTOCOL_VERSION, ...change }), MODE_TIMEOUT_MS);
    } catch (err) {
      if (!(err instanceof RequestFailure)) throw err;
      throw new FlotillaError(ErrorCode.UNAVAILABLE, `leader ${leader.name} did not take the mode change (${err.kind}); retry shortly`, { cause: err });
    }
    const m = decodeEnvelope(data);
    throwIfError(m);
    const settings = m.settings as Omit<ModeResult, 'lsn'> | undefined;
    if (m.type !== 'ok' || !settings || typeof m.lsn !== 'string') throw new FlotillaError(ErrorCode.INTERNAL, `bad set-mode reply from ${leader.name}`);
    this.o.logger.info('replication mode changed', { ...settings, lsn: m.lsn });
    return { ...settings, lsn: m.lsn };
  }

  /** Every replica's quarantine, merged; never throws for a replica that does not answer. */
  async discarded(): Promise<DiscardedResult> {
    const names = this.o.view.nodes().map((n) => n.name);
    const timeoutMs = this.o.discardedTimeoutMs ?? DISCARDED_TIMEOUT_MS;
    const request = encode({ type: 'discarded', v: PROTOCOL_VERSION });
    const answers = await Promise.all(
      names.map(async (node) => {
        try {
          const data = await this.o.requester.request(this.o.subjects.control(node), request, timeoutMs);
          return { node, transactions: decodeDiscardedReply(data, node) };
        } catch (err) {
          const reason = err instanceof RequestFailure ? err.kind : err instanceof FlotillaError ? `${err.code}: ${err.message}` : (err as Error).message;
          return { node, reason };
        }
      }),
    );
    const discarded: DiscardedTransaction[] = [];
    const unavailable: UnavailableNode[] = [];
    for (const a of answers) {
      if ('transactions' in a) discarded.push(...(a.transactions ?? []));
      else unavailable.push({ node: a.node, reason: a.reason });
    }
    discarded.sort((a, b) => compareLsn(a.lsn, b.lsn) || (a.node < b.node ? -1 : a.node > b.node ? 1 : 0) || a.epoch - b.epoch);
    return { discarded, unavailable };
  }
}

/** Decodes the leader's answer to a switchover; ErrorReply → FlotillaError. */
export function decodeSwitchoverReply(data: Uint8Array, from: string): SwitchoverReply {
  try {
    const m = decodeEnvelope(data);
    throwIfError(m);
    if (m.type !== 'switchover-reply') throw new ProtocolError(`expected switchover-reply, got ${m.type}`);
    if (typeof m.from !== 'string' || typeof m.to !== 'string') throw new ProtocolError('bad from/to');
    if (typeof m.epoch !== 'number' || !Number.isSafeInteger(m.epoch)) throw new ProtocolError('bad epoch');
    parseLsn(m.lsn, 'lsn');
    return m as unknown as SwitchoverReply;
  } catch (err) {
    if (err instanceof FlotillaError) throw err;
    throw new FlotillaError(ErrorCode.INTERNAL, `bad switchover reply from ${from}: ${(err as Error).message}`, { cause: err });
  }
}

/** Decodes one replica's quarantine; ErrorReply → FlotillaError, bad shape → ProtocolError. */
export function decodeDiscardedReply(data: Uint8Array, node: string): DiscardedTransaction[] {
  const m = decodeEnvelope(data);
  throwIfError(m);
  if (m.type !== 'discarded-reply') throw new ProtocolError(`expected discarded-reply from ${node}, got ${m.type}`);
  if (!Array.isArray(m.transactions)) throw new ProtocolError(`transactions of ${node} must be an array`);
  return (m.transactions as unknown[]).map((t, i) => {
    if (typeof t !== 'object' || t === null) throw new ProtocolError(`transaction ${i} of ${node} is not an object`);
    const x = t as Record<string, unknown>;
    parseLsn(x.lsn, `transaction ${i} lsn`);
    if (typeof x.epoch !== 'number') throw new ProtocolError(`transaction ${i} of ${node} has a bad epoch`);
    if (!Array.isArray(x.changes)) throw new ProtocolError(`transaction ${i} of ${node} has no changes`);
    return { ...(x as unknown as DiscardedTransaction), node: typeof x.node === 'string' ? x.node : node };
  });
}

function compareLsn(a: string, b: string): number {
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}
