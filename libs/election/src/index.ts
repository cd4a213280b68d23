export * from './lease';
export * from './memory-lease';
export * from './nats-kv-lease';
export * from './kubernetes-lease';
export * from './pod-role-labeler';
export * from './lease-keeper';
