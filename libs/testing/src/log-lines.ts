import * as fs from 'node:fs';
import * as path from 'node:path';
import type { LocalCluster } from '@flotilla/local-cluster';

/** The JSON log lines (those with a `msg`) of one process of a local cluster, from its log file. */
export function logLines(cluster: LocalCluster, name: string): { msg: string; [k: string]: unknown }[] {
  return logLinesOf(path.join(cluster.dataDir, 'logs', `${name}.log`));
}

/** The JSON log lines (those with a `msg`) of a log file; none while it does not exist. */
export function logLinesOf(file: string): { msg: string; [k: string]: unknown }[] {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .flatMap((line) => {
      try {
        const v = JSON.parse(line);
        return typeof v?.msg === 'string' ? [v] : [];
      } catch {
        return [];
      }
    });
}
