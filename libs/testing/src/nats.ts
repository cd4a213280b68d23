import { NatsServer, NatsServerOptions, startNatsServer as startServer } from '@flotilla/local-cluster';
import { removeTempDir, tempDir } from './temp-dir';
import { track, untrack } from './tracker';

/**
 * Starts a nats-server for a test (`-js -a 127.0.0.1 -p <free port> -sd <temp dir>`), resolved once
 * it accepts connections, and tracked so {@link stopAll} stops it. The binary comes from
 * FLOTILLA_NATS_SERVER, else PATH, else ~/.cache/flotilla/bin/nats-server.
 *
 * A store dir made here (no `dir` given) is removed by `server.stop()`, or by stopAll() if the
 * server never started; kept with FLOTILLA_KEEP_TEST_DIRS.
 */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const ownDir = options.dir === undefined ? tempDir('flotilla-nats-') : undefined;
  const server = await startServer({ jetstream: true, ...options, dir: options.dir ?? ownDir });
  const entry = { describe: `nats-server ${server.url}`, stop: () => server.stop(), killNow: () => server.kill('SIGKILL') };
  track(entry);
  const stop = server.stop.bind(server);
  server.stop = async () => {
    untrack(entry);
    await stop();
    if (ownDir) removeTempDir(ownDir);
  };
  return server;
}
