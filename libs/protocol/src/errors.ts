/**
 * Stable wire error codes. Every error that crosses a process boundary is `{code, message, leaderHint?}`;
 * the gateway maps codes to HTTP status in one place ({@link httpStatusOf}).
 */
export const ErrorCode = {
  BAD_REQUEST: 'BAD_REQUEST',
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  SQL_ERROR: 'SQL_ERROR',
  NO_SUCH_TABLE: 'NO_SUCH_TABLE',
  CONSTRAINT: 'CONSTRAINT',
  WRITE_IN_QUERY: 'WRITE_IN_QUERY',
  STATEMENT_TIMEOUT: 'STATEMENT_TIMEOUT',
  NOT_FOUND: 'NOT_FOUND',
  CONFLICT: 'CONFLICT',
  NOT_LEADER: 'NOT_LEADER',
  NO_LEADER: 'NO_LEADER',
  STALE_EPOCH: 'STALE_EPOCH',
  LEASE_EXPIRED: 'LEASE_EXPIRED',
  NOT_ENOUGH_REPLICAS: 'NOT_ENOUGH_REPLICAS',
  NO_REPLICA: 'NO_REPLICA',
  SNAPSHOT_NEEDED: 'SNAPSHOT_NEEDED',
  TIMEOUT: 'TIMEOUT',
  UNAVAILABLE: 'UNAVAILABLE',
  INTERNAL: 'INTERNAL',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** The error body on the wire and in HTTP responses. */
export interface WireError {
  code: ErrorCode;
  message: string;
  /** Name of the node believed to lead, when the error is NOT_LEADER. */
  leaderHint?: string;
  /**
   * True when the refused write had committed on the leader before the refusal (the lease ran out
   * meanwhile, or the node stopped leading): it may be in the history after all.
   */
  committed?: boolean;
}

/** An expected failure with a stable code; `cause` keeps the underlying error. */
export class FlotillaError extends Error {
  override readonly name = 'FlotillaError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown; leaderHint?: string; committed?: boolean },
  ) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.leaderHint = options?.leaderHint;
    this.committed = options?.committed === true;
  }
  readonly leaderHint?: string;
  readonly committed: boolean;

  toWire(): WireError {
    const w: WireError = { code: this.code, message: this.message };
    if (this.leaderHint) w.leaderHint = this.leaderHint;
    if (this.committed) w.committed = true;
    return w;
  }

  static fromWire(w: WireError): FlotillaError {
    return new FlotillaError(w.code, w.message, { leaderHint: w.leaderHint, committed: w.committed === true });
  }
}

const HTTP_STATUS: Record<ErrorCode, number> = {
  BAD_REQUEST: 400,
  PAYLOAD_TOO_LARGE: 413,
  SQL_ERROR: 400,
  NO_SUCH_TABLE: 400,
  CONSTRAINT: 409,
  WRITE_IN_QUERY: 400,
  // The request's own SQL ran too long: sent again it runs as long (PostgreSQL's statement_timeout is an error of the statement too).
  STATEMENT_TIMEOUT: 400,
  NOT_FOUND: 404,
  CONFLICT: 409,
  NOT_LEADER: 503,
  NO_LEADER: 503,
  STALE_EPOCH: 409,
  LEASE_EXPIRED: 503,
  NOT_ENOUGH_REPLICAS: 503,
  NO_REPLICA: 503,
  SNAPSHOT_NEEDED: 409,
  TIMEOUT: 503,
  UNAVAILABLE: 503,
  INTERNAL: 500,
};

/** HTTP status for a wire error code: the one place where that mapping lives. */
export function httpStatusOf(code: ErrorCode): number {
  return HTTP_STATUS[code] ?? 500;
}

/** True for codes after which a client should retry later (the gateway sends Retry-After). */
export function isRetryable(code: ErrorCode): boolean {
  return httpStatusOf(code) === 503;
}
