/**
 * The request body parser of the gateway (Fastify): every body is parsed as JSON whatever its
 * Content-Type (the API speaks JSON only), as express's body-parser `json({strict: true,
 * type: () => true})` did before: an empty body reads as `{}`, the top level must be an object or an
 * array, gzip/deflate/br bodies are inflated, charsets other than UTF-8 are refused. Bodies over
 * `maxBodyBytes` are refused by Fastify itself (FST_ERR_CTP_BODY_TOO_LARGE) before they are read whole.
 *
 * Failures are errors shaped like body-parser's (`type`, `status`), so `fromBodyParserError` maps
 * them; they are deliberately not SyntaxErrors, which Nest would reduce to a bare 400.
 */
import * as zlib from 'node:zlib';

/** An error of the body parser: `type` and `status` as body-parser names them. */
export class BodyError extends Error {
  override readonly name = 'BodyError';
  constructor(
    readonly type: string,
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** What {@link installJsonBodyParser} needs from the Fastify instance. */
export interface BodyParserHost {
  removeAllContentTypeParsers(): void;
  addContentTypeParser(
    contentType: string,
    options: { parseAs: 'buffer'; bodyLimit: number },
    parser: (request: { headers: Record<string, string | string[] | undefined> }, body: Buffer, done: (err: Error | null, body?: unknown) => void) => void,
  ): void;
}

/** Replaces Fastify's parsers with {@link parseJsonBody} for every content type. */
export function installJsonBodyParser(fastify: BodyParserHost, options: { maxBodyBytes: number }): void {
  fastify.removeAllContentTypeParsers();
  fastify.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: options.maxBodyBytes }, (request, body, done) => {
    // No Content-Length and no Transfer-Encoding: no body at all (body-parser left it undefined).
    if (request.headers['content-length'] === undefined && request.headers['transfer-encoding'] === undefined) {
      done(null, undefined);
      return;
    }
    let parsed: unknown;
    try {
      parsed = parseJsonBody(body, header(request.headers['content-type']), header(request.headers['content-encoding']), options.maxBodyBytes);
    } catch (err) {
      done(err as Error);
      return;
    }
    done(null, parsed);
  });
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

const CHARSET = /;\s*charset\s*=\s*"?([^";\s]+)"?/i;
const FIRST_NON_WHITESPACE = /^[\x20\x09\x0a\x0d]*([^\x20\x09\x0a\x0d])/;

/**
 * The JSON value of a raw body; throws {@link BodyError}. `maxBodyBytes` also bounds the inflated
 * size of a compressed body.
 */
export function parseJsonBody(raw: Buffer, contentType: string | undefined, contentEncoding: string | undefined, maxBodyBytes: number): unknown {
  const text = decodeText(inflate(raw, contentEncoding, maxBodyBytes), contentType);
  if (text.length === 0) return {}; // an empty body is a common client mistake; body-parser read it as {}
  if (text[0] !== '{' && text[0] !== '[') {
    const first = FIRST_NON_WHITESPACE.exec(text)?.[1];
    if (first !== '{' && first !== '[') throw strictViolation(text, first);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new BodyError('entity.parse.failed', 400, (err as Error).message);
  }
  if (nestingExceeds(text, JSON_NESTING_MAX)) {
    // Validation and class-transformer recurse: thousands of levels would overflow the stack (a 500).
    throw new BodyError('entity.parse.failed', 400, `JSON nested more than ${JSON_NESTING_MAX} levels deep`);
  }
  return value;
}

/** Deepest nesting of arrays and objects a request body may have (the contract needs 4). */
export const JSON_NESTING_MAX = 32;

/** True when valid JSON `text` nests arrays/objects deeper than `max` (brackets inside strings skipped). */
function nestingExceeds(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) return true;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return false;
}

function inflate(raw: Buffer, contentEncoding: string | undefined, maxBodyBytes: number): Buffer {
  const encoding = (contentEncoding ?? 'identity').toLowerCase();
  if (encoding === 'identity') return raw;
  const options = { maxOutputLength: maxBodyBytes };
  try {
    switch (encoding) {
      case 'gzip':
        return zlib.gunzipSync(raw, options);
      case 'deflate':
        return zlib.inflateSync(raw, options);
      case 'br':
        return zlib.brotliDecompressSync(raw, options);
    }
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE') throw new BodyError('entity.too.large', 413, 'request entity too large');
    throw new BodyError('encoding.failed', 400, `bad ${encoding} body: ${(err as Error).message}`);
  }
  throw new BodyError('encoding.unsupported', 415, `unsupported content encoding "${encoding}"`);
}

function decodeText(raw: Buffer, contentType: string | undefined): string {
  const charset = contentType === undefined ? undefined : CHARSET.exec(contentType)?.[1]?.toLowerCase();
  if (charset === undefined || charset === 'utf-8' || charset === 'utf8') return raw.toString('utf8');
  if (!charset.startsWith('utf-')) throw new BodyError('charset.unsupported', 415, `unsupported charset "${charset.toUpperCase()}"`);
  try {
    return new TextDecoder(charset).decode(raw);
  } catch {
    throw new BodyError('charset.unsupported', 415, `unsupported charset "${charset.toUpperCase()}"`);
  }
}

/** body-parser's strict-mode error: the message JSON.parse gives for the first offending character. */
function strictViolation(text: string, first: string | undefined): BodyError {
  const index = first === undefined ? -1 : text.indexOf(first);
  const partial = index === -1 ? '' : text.substring(0, index) + '#'.repeat(text.length - index);
  try {
    JSON.parse(partial);
  } catch (err) {
    const message = (err as Error).message.replace(/#+/g, (placeholder) => text.substring(index, index + placeholder.length));
    return new BodyError('entity.parse.failed', 400, message);
  }
  return new BodyError('entity.parse.failed', 400, 'the body must be a JSON object or array');
}
