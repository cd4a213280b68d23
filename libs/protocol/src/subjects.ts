/**
 * Every NATS subject Flotilla uses, under the prefix `flotilla.<cluster>.`.
 * Core NATS carries the live stream; the leader's own log is the source of truth, not the broker.
 */
export interface Subjects {
  /** Leader → followers: the live change stream ({@link LogBatch}). */
  readonly log: string;
  /** Follower → leader: positions ({@link AckMessage}). */
  readonly ack: string;
  /** Heartbeat of one node ({@link Heartbeat}); subscribe to {@link Subjects.heartbeatAll}. */
  heartbeat(node: string): string;
  readonly heartbeatAll: string;
  /**
   * Request/reply to one leader by name: entries after a position ({@link CatchupRequest}). Named,
   * so a deposed or frozen leader never swallows requests meant for its successor.
   */
  catchup(leader: string): string;
  /** Request/reply to one leader by name: an online snapshot in chunks ({@link SnapshotRequest}). */
  snapshot(leader: string): string;
  /** Request/reply gateway → leader ({@link WriteRequest}). */
  readonly write: string;
  /** Request/reply gateway → one replica ({@link QueryRequest}). */
  read(node: string): string;
  /** Request/reply monitor/CLI → one replica ({@link ControlRequest}). */
  control(node: string): string;
  /** Broadcast to every replica ({@link ControlRequest}). */
  readonly controlAll: string;
  /** Monitor status ({@link MonitorStatus}), published by every monitor. */
  readonly monitorStatus: string;
}

/** Cluster names become NATS subject tokens, so they are restricted to a safe alphabet. */
export const CLUSTER_NAME_PATTERN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** Node names are DNS labels (pod names), and NATS subject tokens. */
export const NODE_NAME_PATTERN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export function subjectsFor(cluster: string): Subjects {
  if (!CLUSTER_NAME_PATTERN.test(cluster)) {
    throw new Error(`cluster name "${cluster}" must match ${CLUSTER_NAME_PATTERN}`);
  }
  const p = `flotilla.${cluster}.`;
  return {
    log: `${p}log`,
    ack: `${p}ack`,
    heartbeat: (node) => `${p}hb.${node}`,
    heartbeatAll: `${p}hb.*`,
    catchup: (leader) => `${p}catchup.${leader}`,
    snapshot: (leader) => `${p}snapshot.${leader}`,
    write: `${p}write`,
    read: (node) => `${p}read.${node}`,
    control: (node) => `${p}control.${node}`,
    controlAll: `${p}control`,
    monitorStatus: `${p}monitor.status`,
  };
}
