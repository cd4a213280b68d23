/**
 * A replica that starts while NATS answers but JetStream (its lease store) does not — a server
 * still recovering its streams, a slow disk — waits for the lease store, as it waits for NATS,
 * instead of exiting (a pod would go into CrashLoopBackOff, minutes of back-off, for a state that
 * passes by itself). Real nats-server (first without JetStream, then with it, on the same port),
 * the real replica app.
 */
import * as path from 'node:path';
import { freePort, httpJson, logLinesOf, spawnApp, startNatsServer, stopAll, tempDir, waitFor } from '@flotilla/testing';

jest.setTimeout(60_000);

afterAll(() => stopAll());

test('a replica waits for JetStream instead of exiting, and leads once it answers', async () => {
  const dir = tempDir('flotilla-replica-start-');
  const port = await freePort();
  let nats = await startNatsServer({ jetstream: false, port });
  const httpPort = await freePort();
  const logFile = path.join(dir, 'replica-0.log');
  const replica = spawnApp(
    'replica',
    { FLOTILLA_NODE: 'replica-0', FLOTILLA_CLUSTER: 'start', FLOTILLA_NATS_URL: nats.url, FLOTILLA_DATA_DIR: path.join(dir, 'data'), FLOTILLA_HTTP_PORT: String(httpPort) },
    { logFile },
  );
  // Told why, more than once, and still running.
  const retries = await waitFor(() => {
    const r = logLinesOf(logFile).filter((l) => l.msg === 'lease backend not available yet; retrying');
    return r.length >= 2 ? r : null;
  }, { what: 'the replica retrying the lease store', timeoutMs: 20_000 });
  expect(retries[0]).toMatchObject({ level: 'warn', backend: 'nats-kv', err: expect.any(String), retryMs: expect.any(Number) });
  expect(replica.running).toBe(true);

  // JetStream comes up (the same server address): the replica takes the lease and serves.
  await nats.stop();
  nats = await startNatsServer({ jetstream: true, port });
  await waitFor(async () => ((await httpJson('GET', `http://127.0.0.1:${httpPort}/readyz`)).status === 200 ? true : null), {
    what: 'the replica ready (the lease taken)',
    timeoutMs: 30_000,
  });
  expect(logLinesOf(logFile).some((l) => l.msg === 'role change' && l.to === 'leader' && l.role === 'leader' && l.epoch === 1)).toBe(true);
  expect(replica.running).toBe(true);
  await replica.stop();
});
