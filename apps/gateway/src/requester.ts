/**
 * The one thing the gateway's routing needs from NATS: request/reply with a timeout, with
 * failures classified by what they tell about the request's fate.
 */

/** How a request failed before any reply arrived. */
export const RequestFailureKind = {
  /** Nobody subscribes to the subject: the request certainly reached no one. */
  NO_RESPONDERS: 'no-responders',
  /** Not connected to NATS: the request was never sent. */
  NOT_CONNECTED: 'not-connected',
  /** No reply in time: the request may or may not have been handled. */
  TIMEOUT: 'timeout',
  /** Anything else (connection lost mid-request...): fate unknown. */
  OTHER: 'other',
} as const;
export type RequestFailureKind = (typeof RequestFailureKind)[keyof typeof RequestFailureKind];

/** A request that got no reply; `kind` says whether it could have been handled. */
export class RequestFailure extends Error {
  override readonly name = 'RequestFailure';
  constructor(
    readonly kind: RequestFailureKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
  }

  /** True when the request certainly was not handled by anyone, so resending it is always safe. */
  get neverDelivered(): boolean {
    return this.kind === RequestFailureKind.NO_RESPONDERS || this.kind === RequestFailureKind.NOT_CONNECTED;
  }
}

export interface Requester {
  /**
   * Sends `data` to `subject` and resolves with the reply payload. Rejects with
   * {@link RequestFailure} only; never resolves after `timeoutMs`.
   */
  request(subject: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array>;
}
