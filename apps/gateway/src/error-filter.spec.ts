import { ArgumentsHost, BadRequestException, HttpException, NotFoundException, PayloadTooLargeException } from '@nestjs/common';
import { ErrorCode, FlotillaError } from '@flotilla/protocol';
import { MemoryLogger } from '@flotilla/logging';
import { ErrorFilter, ErrorResponse, fromBodyParserError, fromFastifyError, isBodyReadError, RETRY_AFTER_S } from './error-filter';
import { BodyError } from './http-body';

/** A hand-written stand-in for Fastify's reply. */
class FakeResponse implements ErrorResponse {
  sent = false;
  statusCode = 200;
  headers: Record<string, string> = {};
  body: unknown;
  status(code: number): this {
    this.statusCode = code;
    return this;
  }
  header(name: string, value: string): void {
    this.headers[name] = value;
  }
  send(body: unknown): void {
    this.body = body;
    this.sent = true;
  }
}

function hostFor(res: FakeResponse): ArgumentsHost {
  return { switchToHttp: () => ({ getResponse: () => res, getRequest: () => ({}), getNext: () => () => undefined }) } as unknown as ArgumentsHost;
}

/** What the filter answers for `err`. */
function answer(err: unknown, logger = new MemoryLogger()): FakeResponse {
  const res = new FakeResponse();
  new ErrorFilter(logger, { maxBodyBytes: 1024 }).catch(err, hostFor(res));
  return res;
}

/** An error shaped like those of body-parser. */
function bodyParserError(type: string, status: number, message: string): Error {
  return Object.assign(new SyntaxError(message), { type, status, statusCode: status, expose: true });
}

describe('ErrorFilter', () => {
  it('maps a FlotillaError through httpStatusOf, keeping its code and message', () => {
    const res = answer(new FlotillaError(ErrorCode.CONSTRAINT, 'UNIQUE constraint failed: t.id'));
    expect(res.statusCode).toBe(409);
    expect(res.body).toEqual({ error: { code: 'CONSTRAINT', message: 'UNIQUE constraint failed: t.id' } });
    expect(res.headers['Retry-After']).toBeUndefined();
  });

  it('adds Retry-After to every 503', () => {
    for (const code of [ErrorCode.NO_LEADER, ErrorCode.NOT_LEADER, ErrorCode.NO_REPLICA, ErrorCode.TIMEOUT, ErrorCode.UNAVAILABLE]) {
      const res = answer(new FlotillaError(code, 'later'));
      expect(res.statusCode).toBe(503);
      expect(res.headers['Retry-After']).toBe(String(RETRY_AFTER_S));
      expect(res.body).toEqual({ error: { code, message: 'later' } });
    }
  });

  it('answers 400 BAD_REQUEST for malformed JSON from the body parser', () => {
    const res = answer(bodyParserError('entity.parse.failed', 400, 'Unexpected token } in JSON at position 9'));
    expect(res.statusCode).toBe(400);
    expect(res.body).toEqual({ error: { code: 'BAD_REQUEST', message: 'malformed JSON body: Unexpected token } in JSON at position 9' } });
  });

  it('answers 413 PAYLOAD_TOO_LARGE naming the limit for an oversized body', () => {
    const res = answer(bodyParserError('entity.too.large', 413, 'request entity too large'));
    expect(res.statusCode).toBe(413);
    expect(res.body).toEqual({ error: { code: 'PAYLOAD_TOO_LARGE', message: 'request body is larger than the limit of 1024 bytes (maxBodyBytes)' } });
  });

  it("maps Nest's HTTP exceptions to codes", () => {
    expect(answer(new NotFoundException('Cannot GET /v2')).body).toEqual({ error: { code: 'NOT_FOUND', message: 'Cannot GET /v2' } });
    expect(answer(new BadRequestException('Unexpected end of JSON input')).statusCode).toBe(400);
    const big = answer(new PayloadTooLargeException());
    expect(big.statusCode).toBe(413);
    expect(big.body).toMatchObject({ error: { code: 'PAYLOAD_TOO_LARGE' } });
  });

  it('answers 500 INTERNAL without internals for anything unexpected, and logs the stack', () => {
    const logger = new MemoryLogger();
    const res = answer(new TypeError("Cannot read properties of undefined (reading 'rows') at /app/secret/path.js:12"), logger);
    expect(res.statusCode).toBe(500);
    expect(res.body).toEqual({ error: { code: 'INTERNAL', message: 'internal error' } });
    expect(JSON.stringify(res.body)).not.toMatch(/secret|TypeError/);
    expect(logger.lines).toHaveLength(1);
    expect(logger.lines[0]).toMatchObject({ level: 'error', fields: { code: 'INTERNAL' } });
    expect(String(logger.lines[0].fields.err)).toMatch(/secret\/path/);
    expect(answer('a string was thrown').body).toEqual({ error: { code: 'INTERNAL', message: 'internal error' } });
    expect(answer(undefined).statusCode).toBe(500);
  });

  it('does not write twice when the response was already sent', () => {
    const res = new FakeResponse();
    res.sent = true;
    new ErrorFilter(new MemoryLogger()).catch(new FlotillaError(ErrorCode.NO_LEADER, 'x'), hostFor(res));
    expect(res.body).toBeUndefined();
    expect(res.statusCode).toBe(200);
  });
});

describe('body parser errors', () => {
  it('from the JSON body parser and from Fastify become the contract errors', () => {
    const parse = answer(new BodyError('entity.parse.failed', 400, 'Unexpected token b'));
    expect({ status: parse.statusCode, body: parse.body }).toEqual({ status: 400, body: { error: { code: 'BAD_REQUEST', message: 'malformed JSON body: Unexpected token b' } } });
    const tooLarge = answer(Object.assign(new Error('Request body is too large'), { code: 'FST_ERR_CTP_BODY_TOO_LARGE', statusCode: 413 }));
    expect(tooLarge.statusCode).toBe(413);
    expect(tooLarge.body).toEqual({ error: { code: 'PAYLOAD_TOO_LARGE', message: 'request body is larger than the limit of 1024 bytes (maxBodyBytes)' } });
    // Nest hands Fastify's errors to the filter as HttpExceptions with their status.
    expect(answer(new HttpException('Request body is too large', 413)).body).toEqual(tooLarge.body);
    const badLength = Object.assign(new Error('Request body size did not match Content-Length'), { code: 'FST_ERR_CTP_INVALID_CONTENT_LENGTH', statusCode: 400 });
    expect(fromFastifyError(badLength)?.code).toBe(ErrorCode.BAD_REQUEST);
    expect(fromFastifyError(Object.assign(new Error('x'), { code: 'FST_ERR_FAILED_ERROR_SERIALIZATION', statusCode: 500 }))).toBeUndefined();
    expect(fromFastifyError(Object.assign(new Error('x'), { code: 'ENOENT' }))).toBeUndefined();
    expect(isBodyReadError(badLength)).toBe(true);
    expect(isBodyReadError(new BodyError('charset.unsupported', 415, 'unsupported charset "LATIN1"'))).toBe(true);
    expect(isBodyReadError(new FlotillaError(ErrorCode.BAD_REQUEST, 'x'))).toBe(false);
  });

  it('are recognised only with a type and a 4xx status', () => {
    expect(fromBodyParserError(new Error('x'))).toBeUndefined();
    expect(fromBodyParserError(null)).toBeUndefined();
    expect(fromBodyParserError(Object.assign(new Error('boom'), { type: 'stream.not.readable', status: 500 }))).toBeUndefined();
    expect(fromBodyParserError(Object.assign(new Error('unsupported charset "X"'), { type: 'charset.unsupported', status: 415 }))?.code).toBe(ErrorCode.BAD_REQUEST);
  });
});
