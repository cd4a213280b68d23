/**
 * The one place where failures become HTTP responses: every error, whatever threw it (a route,
 * the ValidationPipe, the JSON body parser, Fastify, Nest's router), is answered with
 * `{error: {code, message}}` and the status `httpStatusOf(code)`; 503 adds `Retry-After`.
 * Stack traces are logged, never sent.
 */
import { ArgumentsHost, Catch, ExceptionFilter, HttpException } from '@nestjs/common';
import { ErrorCode, FlotillaError, httpStatusOf } from '@flotilla/protocol';
import type { Logger } from '@flotilla/logging';

/** Seconds a client should wait before retrying a 503. */
export const RETRY_AFTER_S = 1;

/** The wire form of an HTTP error body. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string };
}

/** What {@link ErrorFilter} needs from the HTTP response (a subset of Fastify's reply). */
export interface ErrorResponse {
  /** True once the response was sent. */
  readonly sent: boolean;
  status(code: number): ErrorResponse;
  header(name: string, value: string): unknown;
  send(body: unknown): unknown;
}

/** Options for describing a few errors precisely. */
export interface ErrorMappingOptions {
  /** The configured request body limit, named in PAYLOAD_TOO_LARGE messages. */
  maxBodyBytes?: number;
}

const STATUS_CODES: Record<number, ErrorCode> = {
  400: ErrorCode.BAD_REQUEST,
  404: ErrorCode.NOT_FOUND,
  409: ErrorCode.CONFLICT,
  413: ErrorCode.PAYLOAD_TOO_LARGE,
  503: ErrorCode.UNAVAILABLE,
};

/** Turns any thrown value into a stable code and a message safe to show a client. */
export function toWireError(err: unknown, options: ErrorMappingOptions = {}): { code: ErrorCode; message: string; expected: boolean } {
  if (err instanceof FlotillaError) return { code: err.code, message: err.message, expected: err.code !== ErrorCode.INTERNAL };
  const bodyParser = fromBodyParserError(err, options) ?? fromFastifyError(err, options);
  if (bodyParser) return { code: bodyParser.code, message: bodyParser.message, expected: true };
  if (err instanceof HttpException) {
    const status = err.getStatus();
    // Nest turns Fastify's own errors into HttpExceptions with their status; the only 413 is the body limit.
    const tooLarge = status === 413 ? fromBodyParserError({ type: 'entity.too.large', status }, options) : undefined;
    if (tooLarge) return { code: tooLarge.code, message: tooLarge.message, expected: true };
    const code = STATUS_CODES[status] ?? (status >= 400 && status < 500 ? ErrorCode.BAD_REQUEST : ErrorCode.INTERNAL);
    return { code, message: code === ErrorCode.INTERNAL ? 'internal error' : httpExceptionMessage(err), expected: code !== ErrorCode.INTERNAL };
  }
  return { code: ErrorCode.INTERNAL, message: 'internal error', expected: false };
}

/**
 * The FlotillaError for an error of the JSON body parser (body-parser errors carry a string `type`
 * and a 4xx `status`), or undefined when `err` is not one.
 */
export function fromBodyParserError(err: unknown, options: ErrorMappingOptions = {}): FlotillaError | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { type?: unknown; status?: unknown; message?: unknown };
  if (typeof e.type !== 'string' || typeof e.status !== 'number') return undefined;
  const problem = (code: ErrorCode, message: string) => new FlotillaError(code, message, { cause: err });
  switch (e.type) {
    case 'entity.too.large': {
      const limit = options.maxBodyBytes !== undefined ? ` of ${options.maxBodyBytes} bytes` : '';
      return problem(ErrorCode.PAYLOAD_TOO_LARGE, `request body is larger than the limit${limit} (maxBodyBytes)`);
    }
    case 'entity.parse.failed':
      return problem(ErrorCode.BAD_REQUEST, `malformed JSON body: ${String(e.message)}`);
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return problem(ErrorCode.BAD_REQUEST, `${String(e.message)}; send UTF-8 JSON`);
    default:
      return e.status >= 400 && e.status < 500 ? problem(ErrorCode.BAD_REQUEST, String(e.message)) : undefined;
  }
}

/** Fastify's code for a body over its `bodyLimit`. */
export const FASTIFY_BODY_TOO_LARGE = 'FST_ERR_CTP_BODY_TOO_LARGE';

/**
 * The FlotillaError for an error Fastify raised itself while reading a request (they carry a
 * `FST_` code and a 4xx `statusCode`: body too large, bad Content-Length...), or undefined.
 */
export function fromFastifyError(err: unknown, options: ErrorMappingOptions = {}): FlotillaError | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; statusCode?: unknown; message?: unknown };
  if (typeof e.code !== 'string' || !e.code.startsWith('FST_') || typeof e.statusCode !== 'number') return undefined;
  if (e.code === FASTIFY_BODY_TOO_LARGE) return fromBodyParserError({ type: 'entity.too.large', status: 413 }, options);
  return e.statusCode >= 400 && e.statusCode < 500 ? new FlotillaError(ErrorCode.BAD_REQUEST, String(e.message), { cause: err }) : undefined;
}

/** True for an error of the body parser or of Fastify reading the body (the request reached no route). */
export function isBodyReadError(err: unknown): boolean {
  return fromBodyParserError(err) !== undefined || fromFastifyError(err) !== undefined;
}

function httpExceptionMessage(err: HttpException): string {
  const r = err.getResponse();
  if (typeof r === 'string') return r;
  const m = (r as { message?: unknown }).message;
  if (Array.isArray(m)) return m.join('; ');
  return typeof m === 'string' ? m : err.message;
}

/** Writes the error response for `err`. Exposed for unit tests and non-Nest callers. */
export function sendError(res: ErrorResponse, err: unknown, logger: Logger, options: ErrorMappingOptions = {}): void {
  const { code, message, expected } = toWireError(err, options);
  const status = httpStatusOf(code);
  if (!expected) logger.error('request failed', { code, err: err instanceof Error ? err.stack ?? err.message : String(err) });
  else logger.debug('request refused', { code, status, message });
  if (res.sent) return;
  if (status === 503) res.header('Retry-After', String(RETRY_AFTER_S));
  const body: ErrorBody = { error: { code, message } };
  res.status(status).send(body);
}

@Catch()
export class ErrorFilter implements ExceptionFilter {
  constructor(
    private readonly logger: Logger,
    private readonly options: ErrorMappingOptions = {},
  ) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    sendError(host.switchToHttp().getResponse<ErrorResponse>(), exception, this.logger, this.options);
  }
}
