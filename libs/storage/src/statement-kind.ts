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

/**
 * The first `count` tokens of `sql`, as SQLite's tokenizer would see them: whitespace, comments
 * (`--` to the end of the line, and block comments anywhere, even between two keywords) and empty
 * statements (`;`) are skipped; words and quoted identifiers come upper-cased, punctuation as
 * itself, a string literal as `'`.
 */
function leadingWords(sql: string, count: number, keepLiterals = false): string[] {
  const out: string[] = [];
  const n = sql.length;
  let i = 0;
  while (i < n && out.length < count) {
    const c = sql[i];
    if (c === ';' || /\s/.test(c)) {
      i++;
    } else if (c === '-' && sql[i + 1] === '-') {
      const nl = sql.indexOf('\n', i);
      i = nl < 0 ? n : nl + 1;
    } else if (c === '/' && sql[i + 1] === '*') {
      const end = sql.indexOf('*/', i + 2);
      i = end < 0 ? n : end + 2;
    } else if (/[A-Za-z_\u0080-\uffff]/.test(c)) {
      let j = i + 1;
      while (j < n && /[A-Za-z0-9_$\u0080-\uffff]/.test(sql[j])) j++;
      out.push(sql.slice(i, j).toUpperCase());
      i = j;
    } else if (c === '"' || c === '`' || c === '[' || c === "'") {
      const close = c === '[' ? ']' : c;
      let j = i + 1;
      let text = '';
      while (j < n) {
        if (sql[j] === close) {
          if (close !== ']' && sql[j + 1] === close) {
            text += close;
            j += 2;
            continue;
          }
          break;
        }
        text += sql[j++];
      }
      out.push(c === "'" ? (keepLiterals ? `'${text.toUpperCase()}` : "'") : text.toUpperCase());
      i = j + 1;
    } else {
      out.push(c);
      i++;
    }
  }
  return out;
}

export interface Classification {
  kind: StatementKind;
  /** Why a refused statement is refused, in words that tell the client what to do instead. */
  reason?: string;
  /** DROP TABLE: the table it drops, upper-cased (SQLite names compare case-insensitively). */
  dropsTable?: string;
}

export function classifyStatement(sql: string): Classification {
  const words = leadingWords(sql, 12);
  const [w1, w2, w3] = words;
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
      // The object's name, schema-qualified or not: only the main database is replicated.
      let k = 2;
      if (w2 === 'UNIQUE') k++;
      if (words[k] === 'IF' && words[k + 1] === 'NOT' && words[k + 2] === 'EXISTS') k += 3;
      if (words[k + 1] === '.' && words[k] !== 'MAIN') {
        return { kind: StatementKind.REFUSED, reason: `objects in schema ${words[k].toLowerCase()} are not replicated; create it in main (no schema prefix)` };
      }
      const afterName = words[k + 1] === '.' ? words[k + 3] : words[k + 1];
      if (w2 === 'TABLE' && afterName === 'AS') {
        // DDL is replicated as its text: each follower would run the SELECT again, on its own data and clock.
        return { kind: StatementKind.REFUSED, reason: 'CREATE TABLE ... AS SELECT is not replicated; create the table, then fill it with INSERT INTO ... SELECT' };
      }
      return { kind: StatementKind.DDL };
    }
    case 'ALTER':
      return { kind: StatementKind.DDL };
    case 'DROP': {
      if (w2 !== 'TABLE') return { kind: StatementKind.DDL };
      let k = 2;
      if (words[k] === 'IF' && words[k + 1] === 'EXISTS') k += 2;
      return { kind: StatementKind.DDL, dropsTable: words[k + 1] === '.' ? words[k + 2] : words[k] };
    }
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

/**
 * True when the SQL names one of Flotilla's internal tables (as a word or a quoted identifier; the
 * same text inside a string literal is data, not a name).
 */
export function touchesInternal(sql: string): boolean {
  if (!/_flotilla/i.test(sql)) return false; // the common case, without tokenizing
  const w = leadingWords(sql, Number.POSITIVE_INFINITY, true);
  return w.some((t, i) => {
    if (t.startsWith('_FLOTILLA')) return true;
    // SQLite also takes a single-quoted string as a table name where one is expected:
    // FROM '_flotilla_log' read the log, UPDATE '_flotilla_meta' rewrote the applied LSN.
    return t.startsWith("'_FLOTILLA") && TABLE_NAME_BEFORE.has(w[i - 1] ?? '');
  });
}

/** Words after which a single-quoted string names a table (or a schema-qualified one). */
const TABLE_NAME_BEFORE: ReadonlySet<string> = new Set(['FROM', 'JOIN', 'INTO', 'UPDATE', 'TABLE', ',', '.', 'EXISTS', 'ON', 'INDEXED', 'REFERENCES']);

/**
 * True when `sql` writes SQLite's own AUTOINCREMENT counters (`sqlite_sequence`): they are not
 * replicated (neither captured nor rewound), so the leader's and its followers' would differ; a
 * new ID stays unique regardless (AUTOINCREMENT also goes past the highest rowid in use).
 */
export function writesSqliteSequence(sql: string): boolean {
  if (!/sqlite_sequence/i.test(sql)) return false; // the common case, without tokenizing
  const w = leadingWords(sql, Number.POSITIVE_INFINITY);
  for (let i = 0; i < w.length; i++) {
    if (w[i] !== 'SQLITE_SEQUENCE') continue;
    // The word before it (skipping a schema name: main . sqlite_sequence) says how it is used.
    let j = i - 1;
    if (w[j] === '.' && w[j - 1] === 'MAIN') j -= 2;
    const before = w[j];
    if (before === 'INTO' || before === 'UPDATE' || (before === 'FROM' && w[j - 1] === 'DELETE')) return true;
    // UPDATE OR <conflict> sqlite_sequence
    if (w[j - 1] === 'OR' && w[j - 2] === 'UPDATE') return true;
  }
  return false;
}

/** PRAGMAs a query may run: they only describe the schema or check the file, and set nothing. */
const READ_PRAGMAS: ReadonlySet<string> = new Set([
  'TABLE_INFO', 'TABLE_XINFO', 'TABLE_LIST', 'INDEX_LIST', 'INDEX_INFO', 'INDEX_XINFO', 'FOREIGN_KEY_LIST',
  'FOREIGN_KEY_CHECK', 'INTEGRITY_CHECK', 'QUICK_CHECK', 'COLLATION_LIST', 'FUNCTION_LIST', 'PRAGMA_LIST',
  'COMPILE_OPTIONS', 'USER_VERSION', 'APPLICATION_ID', 'SCHEMA_VERSION', 'PAGE_COUNT', 'PAGE_SIZE', 'FREELIST_COUNT', 'ENCODING',
]);

/**
 * Why a PRAGMA may not run as a query (null when `sql` is no PRAGMA or a harmless one): the read
 * connection takes any PRAGMA, and some set things for the whole process (`hard_heap_limit`,
 * `busy_timeout`, `mmap_size`) or tell the data directory (`database_list`).
 */
export function refusedPragma(sql: string): string | null {
  const w = leadingWords(sql, 4);
  if (w[0] !== 'PRAGMA') return null;
  // PRAGMA [schema .] name [= value | (value)]: a value is a setting, except the argument of a table pragma.
  const name = w[2] === '.' ? w[3] : w[1];
  if (name !== undefined && READ_PRAGMAS.has(name) && !/=/.test(sql)) return null;
  return `PRAGMA ${name?.toLowerCase() ?? ''} is not allowed here: a query may run only the PRAGMAs that describe the schema (table_info, index_list, foreign_key_list, integrity_check, ...)`;
}
