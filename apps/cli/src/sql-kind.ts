/** First keywords of statements that only read, sent to POST /v1/query. */
export const READ_KEYWORDS = ['SELECT', 'WITH', 'PRAGMA', 'EXPLAIN', 'VALUES'] as const;
const WRITE_KEYWORD = /\b(INSERT|UPDATE|DELETE|REPLACE)\b/i;

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
