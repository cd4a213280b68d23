import { LocalCluster, LocalClusterOptions } from '@flotilla/local-cluster';
import { MemoryLogger } from '@flotilla/logging';
import { tempDir } from './temp-dir';
import { track, untrack } from './tracker';

/**
 * Starts a {@link LocalCluster} for a test: data dir in a fresh temp dir unless given, gateway on a
 * free port, supervisor log kept in memory (returned), tracked for stopAll().
 *
 * A data dir made here is removed by stopAll() (after every tracked process is stopped), not by
 * `cluster.stop()`: tests read cluster.json, SQLite files and logs after stopping or killing the
 * cluster. A data dir given by the caller is the caller's and never removed.
 */
export async function startLocalCluster(
  options: Partial<LocalClusterOptions> = {},
): Promise<{ cluster: LocalCluster; logger: MemoryLogger }> {
  const logger = new MemoryLogger({ app: 'local-cluster' });
  const dataDir = options.dataDir ?? tempDir('flotilla-cluster-');
  const cluster = new LocalCluster({ port: 0, replicas: 1, logger, ...options, dataDir });
  const entry = { describe: `LocalCluster ${dataDir}`, stop: () => cluster.stop(), killNow: () => cluster.killAllNow() };
  track(entry);
  const stop = cluster.stop.bind(cluster);
  cluster.stop = () => {
    untrack(entry);
    return stop();
  };
  try {
    await cluster.start();
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return { cluster, logger };
}
