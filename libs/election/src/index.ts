export * from './lease';
export * from './memory-lease';
export * from './nats-kv-lease';
