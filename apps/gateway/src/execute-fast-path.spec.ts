import { MemoryLogger } from '@flotilla/logging';
import { ErrorCode, FlotillaError, WriteReply } from '@flotilla/protocol';
import { EXECUTE_PATH, FastPathReply, FastPathRequest, installExecuteFastPath } from './execute-fast-path';
import type { ExecuteInput, GatewayRouter } from './gateway-router';

class FakeReply implements FastPathReply {
  sent = false;
  status_ = 0;
  headers: Record<string, string> = {};
  body: unknown;
  code(status: number): FakeReply {
    this.status_ = status;
    return this;
  }
  status(status: number): FakeReply {
    return this.code(status);
  }
  header(name: string, value: string): void {
    this.headers[name] = value;
  }
  send(body: unknown): void {
    this.sent = true;
    this.body = body;
  }
}

function setup(execute: (input: ExecuteInput) => Promise<WriteReply>) {
  let hook: ((request: FastPathRequest, reply: FastPathReply) => Promise<unknown>) | undefined;
  const inputs: ExecuteInput[] = [];
  const router = { execute: (input: ExecuteInput) => (inputs.push(input), execute(input)) } as unknown as GatewayRouter;
  installExecuteFastPath({ addHook: (_name, h) => (hook = h) }, router, new MemoryLogger(), { maxBodyBytes: 1024 });
  const run = async (method: string, url: string | undefined, body: unknown) => {
    const reply = new FakeReply();
    const result = await hook!({ method, body, routeOptions: { url } }, reply);
    return { reply, handled: result === reply };
  };
  return { run, inputs };
}

const ok: WriteReply = { type: 'write-reply', v: 1, lsn: '12', epoch: 3, results: [{ changes: 1, lastInsertRowid: '5' }] };

describe('execute fast path', () => {
  it('answers a well-formed write through the router, as the controller would', async () => {
    const { run, inputs } = setup(async () => ok);
    const { reply, handled } = await run('POST', EXECUTE_PATH, { statements: [{ sql: 'INSERT INTO t VALUES (?)', params: [1] }, { sql: 'DELETE FROM u' }], idempotencyKey: 'k1', durability: 'sync' });
    expect(handled).toBe(true);
    expect(reply.status_).toBe(200);
    expect(reply.body).toEqual({ lsn: '12', epoch: 3, results: [{ changes: 1, lastInsertRowid: '5' }] });
    expect(inputs).toEqual([{ statements: [{ sql: 'INSERT INTO t VALUES (?)', params: [1] }, { sql: 'DELETE FROM u' }], idempotencyKey: 'k1', durability: 'sync' }]);
  });

  it('maps a refused write to its status and error body, 503 with Retry-After', async () => {
    const { run } = setup(async () => {
      throw new FlotillaError(ErrorCode.NOT_ENOUGH_REPLICAS, 'no sync follower flushed it in time');
    });
    const { reply, handled } = await run('POST', EXECUTE_PATH, { statements: [{ sql: 'INSERT INTO t VALUES (1)' }] });
    expect(handled).toBe(true);
    expect(reply.status_).toBe(503);
    expect(reply.headers['Retry-After']).toBe('1');
    expect(reply.body).toEqual({ error: { code: ErrorCode.NOT_ENOUGH_REPLICAS, message: 'no sync follower flushed it in time' } });
  });

  it('maps an SQL error to 400', async () => {
    const { run } = setup(async () => {
      throw new FlotillaError(ErrorCode.SQL_ERROR, 'no such table: nope');
    });
    const { reply } = await run('POST', EXECUTE_PATH, { statements: [{ sql: 'INSERT INTO nope VALUES (1)' }] });
    expect(reply.status_).toBe(400);
    expect(reply.body).toEqual({ error: { code: ErrorCode.SQL_ERROR, message: 'no such table: nope' } });
  });

  it.each([
    ['no statements', {}],
    ['empty statements', { statements: [] }],
    ['a statement without sql', { statements: [{ params: [1] }] }],
    ['an unknown field', { statements: [{ sql: 'SELECT 1' }], extra: 1 }],
    ['a bad parameter', { statements: [{ sql: 'SELECT ?', params: [true] }] }],
    ['an array body', [{ sql: 'SELECT 1' }]],
  ])('leaves %s to the controller, whose pipe words the error', async (_what, body) => {
    const { run, inputs } = setup(async () => ok);
    const { reply, handled } = await run('POST', EXECUTE_PATH, body);
    expect(handled).toBe(false);
    expect(reply.sent).toBe(false);
    expect(inputs).toEqual([]);
  });

  it('leaves every other route alone', async () => {
    const { run, inputs } = setup(async () => ok);
    for (const [method, url] of [['POST', '/v1/query'], ['GET', EXECUTE_PATH], ['POST', undefined]] as const) {
      const { reply, handled } = await run(method, url, { statements: [{ sql: 'INSERT INTO t VALUES (1)' }] });
      expect(handled).toBe(false);
      expect(reply.sent).toBe(false);
    }
    expect(inputs).toEqual([]);
  });
});
