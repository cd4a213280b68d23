/**
 * Classifies a SQL statement by its leading keyword, for the rules of what a client may send.
 * SQLite itself decides what is read-only (`stmt.readonly`); this only separates DDL and refuses
 * statements that would bypass replication.
 */

export const StatementKind = {
  DML: 'dml',
  DDL: 'ddl',
  READ: 'read',
  REFUSED: 'refused',
} as const;
export type StatementKind = (typeof StatementKind)[keyof typeof StatementKind];

/** Strips leading whitespace and SQL comments. */
function leadingWords(sql: string, count: number): string[] {
  let s = sql;
  for (;;) {
    const t = s.replace(/^\s+/, '');
    if (t.startsWith('--')) {
      const nl = t.indexOf('\n');
      s = nl < 0 ? '' : t.slice(nl + 1);
    } else if (t.startsWith('/*')) {
      const end = t.indexOf('*/');
      s = end < 0 ? '' : t.slice(end + 2);
    } else {
      s = t;
      break;
    }
  }
  return s.split(/[\s(]+/, count).map((w) => w.toUpperCase());
}

export interface Classification {
  kind: StatementKind;
  /** Why a refused statement is refused, in words that tell the client what to do instead. */
  reason?: string;
}

export function classifyStatement(sql: string): Classification {
  const [w1, w2, w3] = leadingWords(sql, 3);
  switch (w1) {
    case 'INSERT':
    case 'UPDATE':
    case 'DELETE':
    case 'REPLACE':
    case 'WITH':
      return { kind: StatementKind.DML };
    case 'SELECT':
    case 'VALUES':
    case 'EXPLAIN':
      return { kind: StatementKind.READ };
    case 'CREATE': {
      if (w2 === 'TEMP' || w2 === 'TEMPORARY') {
        return { kind: StatementKind.REFUSED, reason: 'temporary objects are per connection and are not replicated; create a regular table' };
      }
      if (w2 === 'TRIGGER' || (w3 === 'TRIGGER' && (w2 === 'TEMP' || w2 === 'TEMPORARY'))) {
        return {
          kind: StatementKind.REFUSED,
          reason: 'CREATE TRIGGER is not supported with the logical log format: rows changed by a trigger are replicated as rows, so followers must not run triggers again',
        };
      }
      if (w2 === 'VIRTUAL') return { kind: StatementKind.REFUSED, reason: 'virtual tables are not replicated' };
      return { kind: StatementKind.DDL };
    }
    case 'ALTER':
    case 'DROP':
      return { kind: StatementKind.DDL };
    case 'BEGIN':
    case 'COMMIT':
    case 'END':
    case 'ROLLBACK':
    case 'SAVEPOINT':
    case 'RELEASE':
      return { kind: StatementKind.REFUSED, reason: 'transaction control is implicit: the statements of one request run as one transaction' };
    case 'PRAGMA':
      return { kind: StatementKind.REFUSED, reason: 'PRAGMA is not allowed through the API: the node manages its own settings' };
    case 'ATTACH':
    case 'DETACH':
    case 'VACUUM':
    case 'REINDEX':
    case 'ANALYZE':
      return { kind: StatementKind.REFUSED, reason: `${w1} is managed by the node and not allowed through the API` };
    default:
      // Not a statement SQLite knows either: let SQLite's parser report the syntax error.
      return { kind: StatementKind.READ };
  }
}

/** True when the SQL names one of Flotilla's internal tables. */
export function touchesInternal(sql: string): boolean {
  return /_flotilla/i.test(sql);
}
