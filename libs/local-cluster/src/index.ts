export * from './backoff';
export * from './child-process';
export * from './cluster-file';
export * from './free-port';
export * from './local-cluster';
export * from './nats-server';
export * from './repo-root';
