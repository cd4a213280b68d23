/** First keywords of statements that only read, sent to POST /v1/query. */
export const READ_KEYWORDS = ['SELECT', 'WITH', 'PRAGMA', 'EXPLAIN', 'VALUES'] as const;
/** A write statement's keyword; `replace(` is the string function, not REPLACE INTO. */
const WRITE_KEYWORD = /\b(INSERT|UPDATE|DELETE|REPLACE)\b(?!\s*\()/i;

/** `sql` without comments and string literals (enough to find keywords, not to run it). */
export function stripCommentsAndStrings(sql: string): string {
  return sql
    .replace(/'(?:[^']|'')*'/g, "''")
    .replace(/"(?:[^"]|"")*"/g, '""')
    .replace(/--[^\n]*/g, ' ')
    .replace(/\/\*[\s\S]*?(\*\/|$)/g, ' ');
}

/** The leading keyword of `sql`, upper-cased ('' for an empty statement). */
export function leadingKeyword(sql: string): string {
  const match = /^[\s(;]*([A-Za-z]+)/.exec(stripCommentsAndStrings(sql));
  return match ? match[1].toUpperCase() : '';
}

/**
 * True when `sql` goes to /v1/query: it starts with SELECT, WITH, PRAGMA, EXPLAIN or VALUES, except
 * a WITH that feeds an INSERT/UPDATE/DELETE/REPLACE (a common table expression before a write).
 */
export function isReadStatement(sql: string): boolean {
  const keyword = leadingKeyword(sql);
  if (!(READ_KEYWORDS as readonly string[]).includes(keyword)) return false;
  if (keyword === 'WITH') return !WRITE_KEYWORD.test(stripCommentsAndStrings(sql));
  return true;
}

/**
 * Splits a script at top-level semicolons (not inside quotes or comments) into statements, so
 * `flotilla sql "INSERT ...; INSERT ..."` runs them as one transaction. A script that creates a
 * trigger is left whole: its BEGIN ... END body holds semicolons of its own.
 */
export function splitStatements(sql: string): string[] {
  if (/\bCREATE\s+(TEMP\s+|TEMPORARY\s+)?TRIGGER\b/i.test(stripCommentsAndStrings(sql))) return [sql.trim()];
  const statements: string[] = [];
  let current = '';
  let i = 0;
  while (i < sql.length) {
    const c = sql[i];
    const quote = c === "'" || c === '"' || c === '`' ? c : c === '[' ? ']' : undefined;
    if (quote) {
      const end = sql.indexOf(quote, i + 1);
      const stop = end === -1 ? sql.length : end + 1;
      current += sql.slice(i, stop);
      i = stop;
    } else if (c === '-' && sql[i + 1] === '-') {
      const end = sql.indexOf('\n', i);
      const stop = end === -1 ? sql.length : end;
      current += sql.slice(i, stop);
      i = stop;
    } else if (c === '/' && sql[i + 1] === '*') {
      const end = sql.indexOf('*/', i + 2);
      const stop = end === -1 ? sql.length : end + 2;
      current += sql.slice(i, stop);
      i = stop;
    } else if (c === ';') {
      statements.push(current);
      current = '';
      i++;
    } else {
      current += c;
      i++;
    }
  }
  statements.push(current);
  // Drop empty pieces and pieces that are only comments.
  return statements.map((s) => s.trim()).filter((s) => stripCommentsAndStrings(s).trim() !== '');
}
