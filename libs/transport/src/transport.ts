/**
 * The message transport as the replication core sees it: publish, subscribe, request/reply.
 * The NATS implementation is in nats-transport.ts; unit tests use an in-memory one.
 */

/** Why a request failed without an answer. */
export const TransportFailure = {
  /** Nobody subscribes to the subject (for `write`: there is no leader). */
  NO_RESPONDERS: 'no-responders',
  TIMEOUT: 'timeout',
  /** The connection is closed or draining. */
  CLOSED: 'closed',
} as const;
export type TransportFailure = (typeof TransportFailure)[keyof typeof TransportFailure];

export class TransportError extends Error {
  override readonly name = 'TransportError';
  constructor(
    readonly failure: TransportFailure,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface IncomingMessage {
  subject: string;
  data: Uint8Array;
  /** Present for requests: sends the reply. */
  respond?: (data: Uint8Array) => void;
}

export interface Subscription {
  unsubscribe(): void;
}

export interface Transport {
  publish(subject: string, data: Uint8Array): void;
  /** `handler` is called once per message, in arrival order. */
  subscribe(subject: string, handler: (msg: IncomingMessage) => void): Subscription;
  /** Throws {@link TransportError} when no answer comes. */
  request(subject: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array>;
  /** True while connected to the server. */
  readonly connected: boolean;
  close(): Promise<void>;
}
