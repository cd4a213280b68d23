import * as fs from 'node:fs';
import * as path from 'node:path';

/** Kinds of process a local cluster runs. */
export type ProcessKind = 'nats' | 'replica' | 'gateway' | 'monitor';

/** State of one supervised process as the supervisor last saw it. */
export type ProcessState = 'starting' | 'running' | 'restarting' | 'exited' | 'stopped';

/** One process in cluster.json. */
export interface ClusterProcessInfo {
  /** As in GET /v1/cluster for replicas (replica-0, ...); `nats`, `gateway`, `monitor-0` otherwise. */
  name: string;
  kind: ProcessKind;
  /** OS pid while the process runs; null while it is down (restarting, exited, stopped). */
  pid: number | null;
  /** Ports it listens on: `http` for Flotilla apps, `client` for nats-server. */
  ports: Record<string, number>;
  logFile: string;
  /** Times the supervisor started it again after it died. */
  restarts: number;
  state: ProcessState;
  /** Its own data directory (replicas and monitor). */
  dataDir?: string;
}

/** Contents of <dataDir>/cluster.json, rewritten atomically on every change. */
export interface ClusterFile {
  cluster: string;
  /** Pid of the supervisor (`flotilla up` or a test process). */
  supervisorPid: number;
  natsUrl: string;
  gatewayUrl: string;
  dataDir: string;
  startedAt: string;
  updatedAt: string;
  processes: ClusterProcessInfo[];
}

/** <dataDir>/cluster.json */
export function clusterFilePath(dataDir: string): string {
  return path.join(dataDir, 'cluster.json');
}

/** Writes the file atomically (temp file + rename), so a reader never sees a half-written file. */
export function writeClusterFile(dataDir: string, content: ClusterFile): void {
  const target = clusterFilePath(dataDir);
  const temp = `${target}.${process.pid}.tmp`;
  fs.writeFileSync(temp, JSON.stringify(content, null, 2) + '\n');
  fs.renameSync(temp, target);
}

/** The cluster file of `dataDir`, or undefined when there is none (or it is unreadable). */
export function readClusterFile(dataDir: string): ClusterFile | undefined {
  try {
    return JSON.parse(fs.readFileSync(clusterFilePath(dataDir), 'utf8')) as ClusterFile;
  } catch {
    return undefined;
  }
}
