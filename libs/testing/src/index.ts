export { freePort } from '@flotilla/local-cluster';
export * from './http-json';
export * from './nats';
export * from './spawn-app';
export * from './table-checksums';
export * from './tcp-proxy';
export * from './tracker';
export * from './wait-for';
export * from './cluster';
