/**
 * Plain-text tables for the terminal: a header, a dashed rule, left-aligned text and right-aligned
 * numbers, no colours (so output pipes cleanly into grep and files).
 */

/** One cell as shown: NULL for null, exact integers from `{$i}`, blobs `{$b}` as x'hex'. */
export function formatCell(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (typeof value === 'object') {
    const v = value as Record<string, unknown>;
    if (typeof v.$i === 'string' && Object.keys(v).length === 1) return v.$i;
    if (typeof v.$b === 'string' && Object.keys(v).length === 1) {
      const hex = Buffer.from(v.$b, 'base64').toString('hex');
      return hex.length > 64 ? `x'${hex.slice(0, 64)}…' (${hex.length / 2} bytes)` : `x'${hex}'`;
    }
  }
  return JSON.stringify(value);
}

function isNumeric(value: unknown): boolean {
  if (typeof value === 'number' || typeof value === 'bigint') return true;
  return typeof value === 'object' && value !== null && typeof (value as { $i?: unknown }).$i === 'string';
}

/** Lines of a table with `columns` as header; `rows` are objects keyed by column. */
export function formatTable(columns: string[], rows: Record<string, unknown>[]): string[] {
  const cells = rows.map((row) => columns.map((c) => formatCell(row[c]).replace(/\n/g, '\\n')));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i].length)));
  const right = columns.map((c) => rows.length > 0 && rows.every((row) => row[c] === null || row[c] === undefined || isNumeric(row[c])));
  const pad = (text: string, i: number) => (right[i] ? text.padStart(widths[i]) : text.padEnd(widths[i]));
  const line = (texts: string[]) => texts.map(pad).join('  ').trimEnd();
  return [line(columns), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)];
}

/** Column names of `rows` in first-seen order (rows from a gateway may omit nothing, but be safe). */
export function columnsOf(rows: Record<string, unknown>[]): string[] {
  const seen = new Set<string>();
  for (const row of rows) for (const key of Object.keys(row)) seen.add(key);
  return [...seen];
}
