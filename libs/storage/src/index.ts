export * from './store';
export * from './apply';
export * from './table-meta';
export * from './statement-kind';
export * from './snapshot';
export * from './log-value';
export { encodeColumnSql } from './capture';
export * from './quarantine';
export * from './data-files';
