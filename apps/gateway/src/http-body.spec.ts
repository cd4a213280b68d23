import * as zlib from 'node:zlib';
import { BodyError, installJsonBodyParser, parseJsonBody } from './http-body';

const LIMIT = 1024;
const parse = (text: string, contentType?: string, contentEncoding?: string) => parseJsonBody(Buffer.from(text), contentType, contentEncoding, LIMIT);

/** The BodyError `fn` throws. */
function failure(fn: () => unknown): BodyError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BodyError);
    return err as BodyError;
  }
  throw new Error('expected a BodyError');
}

describe('parseJsonBody', () => {
  it('parses JSON objects and arrays whatever the content type says', () => {
    expect(parse('{"sql":"SELECT 1"}', 'application/json')).toEqual({ sql: 'SELECT 1' });
    expect(parse(' \n[1, 2]', 'text/plain')).toEqual([1, 2]);
    expect(parse('{"a":"é"}', undefined)).toEqual({ a: 'é' });
    expect(parse('{"a":1}', 'application/json; charset=UTF-8')).toEqual({ a: 1 });
  });

  it('reads an empty body as {}', () => {
    expect(parse('')).toEqual({});
  });

  it('refuses a top level that is not an object or an array, with JSON.parse`s message (as body-parser did)', () => {
    expect({ ...failure(() => parse(' "str"')) }).toEqual({ type: 'entity.parse.failed', status: 400, name: 'BodyError' });
    expect(failure(() => parse(' "str"')).message).toBe('Unexpected token \'"\', " "str"" is not valid JSON');
    expect(failure(() => parse('null')).message).toBe('Unexpected token \'n\', "null" is not valid JSON');
    expect(failure(() => parse('   ')).message).toBe('Unexpected end of JSON input');
  });

  it('reports malformed JSON as entity.parse.failed', () => {
    const e = failure(() => parse('{"a":'));
    expect([e.type, e.status]).toEqual(['entity.parse.failed', 400]);
    expect(e.message).toMatch(/JSON/);
  });

  it('refuses JSON nested deeper than JSON_NESTING_MAX (400, not a stack overflow later), counting no bracket inside a string', () => {
    const deep = '{"a":' + '['.repeat(50_000) + ']'.repeat(50_000) + '}';
    const e = failure(() => parse(deep));
    expect([e.type, e.status]).toEqual(['entity.parse.failed', 400]);
    expect(e.message).toMatch(/nested more than 32/);
    const ok = '{"s":"' + '[\\"'.repeat(100) + '","a":' + '['.repeat(31) + ']'.repeat(31) + '}';
    expect(() => parse(ok)).not.toThrow();
  });

  it('inflates gzip, deflate and br bodies within the limit', () => {
    const body = Buffer.from('{"a":1}');
    expect(parseJsonBody(zlib.gzipSync(body), undefined, 'gzip', LIMIT)).toEqual({ a: 1 });
    expect(parseJsonBody(zlib.deflateSync(body), undefined, 'Deflate', LIMIT)).toEqual({ a: 1 });
    expect(parseJsonBody(zlib.brotliCompressSync(body), undefined, 'br', LIMIT)).toEqual({ a: 1 });
    const bomb = zlib.gzipSync(Buffer.from(`{"a":"${'x'.repeat(LIMIT)}"}`));
    expect([failure(() => parseJsonBody(bomb, undefined, 'gzip', LIMIT)).type, bomb.length < LIMIT]).toEqual(['entity.too.large', true]);
    expect(failure(() => parse('{}', undefined, 'gzip')).status).toBe(400);
    expect(failure(() => parse('{}', undefined, 'compress'))).toMatchObject({ type: 'encoding.unsupported', message: 'unsupported content encoding "compress"' });
  });

  it('refuses charsets other than the UTF ones', () => {
    expect(failure(() => parse('{}', 'application/json; charset=latin1'))).toMatchObject({ type: 'charset.unsupported', status: 415, message: 'unsupported charset "LATIN1"' });
    expect(failure(() => parse('{}', 'application/json; charset=utf-7'))).toMatchObject({ type: 'charset.unsupported' });
    expect(parseJsonBody(Buffer.from('{"a":1}', 'utf16le'), 'application/json; charset=utf-16le', undefined, LIMIT)).toEqual({ a: 1 });
  });
});

describe('installJsonBodyParser', () => {
  type Parser = Parameters<Parameters<typeof installJsonBodyParser>[0]['addContentTypeParser']>[2];

  function install(): { parser: Parser; calls: string[] } {
    const calls: string[] = [];
    let parser: Parser | undefined;
    installJsonBodyParser(
      {
        removeAllContentTypeParsers: () => calls.push('remove'),
        addContentTypeParser: (type, options, fn) => {
          calls.push(`add ${type} ${options.parseAs} ${options.bodyLimit}`);
          parser = fn;
        },
      },
      { maxBodyBytes: LIMIT },
    );
    return { parser: parser!, calls };
  }

  function run(parser: Parser, headers: Record<string, string>, body: string): { err: Error | null; body?: unknown } {
    let result: { err: Error | null; body?: unknown } | undefined;
    parser({ headers }, Buffer.from(body), (err, parsed) => (result = { err, body: parsed }));
    return result!;
  }

  it('replaces every parser with one for all content types, limited to maxBodyBytes', () => {
    expect(install().calls).toEqual(['remove', `add * buffer ${LIMIT}`]);
  });

  it('passes the parsed body or the BodyError to Fastify', () => {
    const { parser } = install();
    expect(run(parser, { 'content-length': '7' }, '{"a":1}')).toEqual({ err: null, body: { a: 1 } });
    expect(run(parser, { 'transfer-encoding': 'chunked' }, '')).toEqual({ err: null, body: {} });
    expect(run(parser, { 'content-length': '4' }, 'nope').err).toBeInstanceOf(BodyError);
  });

  it('leaves the body undefined when the request has none (no Content-Length, no Transfer-Encoding)', () => {
    expect(run(install().parser, { 'content-type': 'application/json' }, '')).toEqual({ err: null, body: undefined });
  });
});
