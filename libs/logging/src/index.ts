export * from './logger';
export * from './clock';
