export * from './transport';
export * from './nats-transport';
