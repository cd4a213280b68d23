export * from './subjects';
export * from './errors';
export * from './messages';
export * from './codec';
export * from './values';
export * from './batch-frame';
