import { waitFor, WaitForTimeoutError } from './wait-for';

describe('waitFor', () => {
  it('returns the first truthy value', async () => {
    let calls = 0;
    const value = await waitFor(() => (++calls >= 3 ? { calls } : undefined), { intervalMs: 1, timeoutMs: 1000 });
    expect(value).toEqual({ calls: 3 });
  });

  it('treats a throwing condition as not yet', async () => {
    let calls = 0;
    const value = await waitFor(
      async () => {
        if (++calls < 2) throw new Error('not yet');
        return 'ok';
      },
      { intervalMs: 1, timeoutMs: 1000 },
    );
    expect(value).toBe('ok');
  });

  it('names what it waited for and the last value at the deadline', async () => {
    const failure = waitFor(() => 0, { what: 'the answer', intervalMs: 5, timeoutMs: 30 });
    await expect(failure).rejects.toThrow(WaitForTimeoutError);
    await expect(failure).rejects.toThrow(/timed out after 30ms .*waiting for the answer; last value: 0/);
  });

  it('reports the last error at the deadline', async () => {
    await expect(
      waitFor(
        () => {
          throw new Error('connection refused');
        },
        { what: 'the server', intervalMs: 5, timeoutMs: 30 },
      ),
    ).rejects.toThrow(/waiting for the server; last error: connection refused/);
  });

  it('does not hang on a condition that never settles', async () => {
    const started = Date.now();
    await expect(waitFor(() => new Promise(() => undefined), { timeoutMs: 50, what: 'a hung call' })).rejects.toThrow(/a hung call/);
    expect(Date.now() - started).toBeLessThan(1000);
  });
});
