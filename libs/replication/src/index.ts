export * from './cluster-view';
export * from './context';
export * from './leader';
export * from './follower';
export * from './replica-node';
export * from './retention';
export * from './sync-tracker';
export * from './validate';
export { SNAPSHOT_FSYNC_EVERY_BYTES } from './snapshot-file-writer';
