/**
 * Storage against real SQLite files: capture on a leader store, apply on a follower store, and the
 * two end up identical (type-exact checksums); failures roll back only their own request.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ErrorCode } from '@flotilla/protocol';
import Database from 'better-sqlite3';
import {
  DivergenceError,
  leftoverFiles,
  LogEntry,
  removeFilePaced,
  replacedFileFor,
  seedFileFor,
  servedSnapshotsDirFor,
  isTurnSpent,
  StatementGuard,
  Store,
  RESULT_BYTES_MAX,
  SQL_TURN_TICK_MS,
  WAL_JOURNAL_SIZE_LIMIT_BYTES,
  WAL_PREALLOCATE_BYTES,
  WriteInput,
} from '@flotilla/storage';
import { removeTempDir, tempDir } from '@flotilla/testing';

let dir: string;
let leader: Store;
let follower: Store;

beforeEach(() => {
  dir = tempDir('flotilla-storage-');
  leader = Store.open(path.join(dir, 'leader.sqlite'));
  leader.startCapture();
  leader.beginEpoch(1);
  follower = Store.open(path.join(dir, 'follower.sqlite'));
});

afterEach(() => {
  leader.close();
  follower.close();
  removeTempDir(dir);
});

function exec(...reqs: WriteInput[]) {
  const outs = leader.executeBatch(reqs, 1);
  const entries = outs.flatMap((o) => (o.ok && o.entry ? [o.entry] : []));
  follower.applyEntries(entries);
  return outs;
}

function sql(s: string, params?: unknown[]): WriteInput {
  return { statements: [{ sql: s, params: params as never }] };
}

test('inserts, updates, deletes and DDL replicate type-exactly', () => {
  exec(sql('CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, score, data BLOB)'));
  exec(sql('CREATE TABLE kv(k TEXT PRIMARY KEY, v) WITHOUT ROWID'));
  exec(sql('CREATE TABLE nopk(a, b)'));
  exec(
    sql('INSERT INTO t(name, score, data) VALUES (?, ?, ?)', ['a', 1.5, { $b: Buffer.from([0, 1, 2]).toString('base64') }]),
    sql('INSERT INTO t(name, score) VALUES (?, ?)', ['b', 5]),
    sql('INSERT INTO t(name, score) VALUES (?, 5.0)', ['c']),
    sql('INSERT INTO t(name, score) VALUES (?, ?)', ['d', { $i: '9007199254740993' }]),
    sql("INSERT INTO kv VALUES ('x', 1), ('y', 'two')"),
    sql('INSERT INTO nopk VALUES (1, 2), (1, 2), (3, 0.1)'),
  );
  exec(sql("UPDATE t SET score = score * 2 WHERE name IN ('a', 'b')"), sql("UPDATE kv SET k = 'z' WHERE k = 'x'"));
  exec(sql('DELETE FROM nopk WHERE rowid = 2'), sql('UPDATE nopk SET a = 7 WHERE a = 3'));
  exec(sql('ALTER TABLE t ADD COLUMN extra TEXT DEFAULT \'d\''), sql("UPDATE t SET extra = 'e' WHERE id = 1"));
  exec(sql('INSERT OR REPLACE INTO t(id, name) VALUES (2, \'replaced\')'));
  exec(sql('DELETE FROM t WHERE id = 3'));
  expect(follower.lastLsn).toBe(leader.lastLsn);
  const a = leader.tableChecksums();
  expect(Object.keys(a).sort()).toEqual(['kv', 'nopk', 't']);
  expect(follower.tableChecksums()).toEqual(a);
  const types = follower.query('SELECT typeof(score) AS ty FROM t ORDER BY id').rows.map((r) => r.ty);
  expect(types).toEqual(['real', 'null', 'integer']);
});

test('foreign-key cascades, REALs beyond 2^63, WITHOUT ROWID + STRICT tables and tables named SQLite* replicate, and snapshot', async () => {
  exec(
    sql('CREATE TABLE p(id INTEGER PRIMARY KEY)'),
    sql('CREATE TABLE c(id INTEGER PRIMARY KEY, p INTEGER REFERENCES p(id) ON DELETE CASCADE ON UPDATE CASCADE)'),
    sql('CREATE TABLE ws(k TEXT PRIMARY KEY, v INTEGER) WITHOUT ROWID, STRICT'),
    sql('CREATE TABLE SQLiteCache(a)'),
    sql('CREATE TABLE big(x REAL)'),
  );
  exec(sql('INSERT INTO p VALUES (1), (2)'), sql('INSERT INTO c VALUES (10, 1), (20, 2)'));
  // Cascades: captured on the leader as rows; the follower applies them without cascading again.
  const outs = exec(sql('DELETE FROM p WHERE id = 1'), sql('UPDATE p SET id = 3 WHERE id = 2'), sql('REPLACE INTO p VALUES (3)'));
  expect(outs.every((o) => o.ok)).toBe(true);
  exec(sql("INSERT INTO ws VALUES ('a', 1)"), sql("UPDATE ws SET v = 2 WHERE k = 'a'"), sql('INSERT INTO SQLiteCache VALUES (1)'));
  exec(sql('INSERT INTO big VALUES (6.02e23), (-1e300), (9007199254740992.0)'));
  // INTEGER PRIMARY KEY DESC is no rowid alias: rows keep their own rowids, set explicitly or not.
  exec(sql('CREATE TABLE d(id INTEGER PRIMARY KEY DESC, v)'));
  exec(sql('INSERT INTO d(id, v) VALUES (10, 1)'), sql('INSERT INTO d(rowid, id, v) VALUES (3, 20, 2)'), sql('UPDATE d SET v = 5 WHERE id = 20'), sql('DELETE FROM d WHERE id = 10'));
  expect(follower.query('SELECT rowid AS r, id, v FROM d').rows).toEqual(leader.query('SELECT rowid AS r, id, v FROM d').rows);
  expect(follower.tableChecksums()).toEqual(leader.tableChecksums());
  expect(follower.query('SELECT typeof(x) AS t FROM big').rows.map((r) => r.t)).toEqual(['real', 'real', 'real']);
  const snap = await leader.snapshotTo(path.join(dir, 'fk-snap.sqlite'));
  const fresh = Store.open(path.join(dir, 'fresh.sqlite'));
  try {
    fresh.replaceWithSnapshot(snap.file);
    expect(fresh.tableChecksums()).toEqual(leader.tableChecksums());
  } finally {
    fresh.close();
  }
});

test('what would replicate differently is refused whole: rows then a schema change of their table, parameters or a SELECT in DDL', () => {
  exec(sql('CREATE TABLE a(x)'), sql('INSERT INTO a VALUES (1)'));
  const before = leader.lastLsn;
  const outs = exec(
    { statements: [{ sql: 'INSERT INTO a VALUES (2)' }, { sql: 'ALTER TABLE a ADD COLUMN y' }] },
    { statements: [{ sql: 'INSERT INTO a VALUES (3)' }, { sql: 'DROP TABLE a' }] },
    { statements: [{ sql: 'CREATE TABLE b AS SELECT * FROM a' }] },
    { statements: [{ sql: 'CREATE TABLE c(x DEFAULT 1)', params: [5] }] },
  );
  for (const o of outs) expect(o).toMatchObject({ ok: false, error: { code: ErrorCode.BAD_REQUEST } });
  expect(leader.lastLsn).toBe(before);
  // The other order is fine: the rows are captured under the new columns.
  const ok = exec({ statements: [{ sql: 'ALTER TABLE a ADD COLUMN y' }, { sql: 'INSERT INTO a VALUES (4, 4)' }] });
  expect(ok[0].ok).toBe(true);
  expect(follower.tableChecksums()).toEqual(leader.tableChecksums());
});

test('DROP TABLE of a table with rows that foreign keys refer to is refused; emptied first, it replicates', () => {
  exec(sql('CREATE TABLE par(id INTEGER PRIMARY KEY)'), sql('CREATE TABLE kid(id INTEGER PRIMARY KEY, p INTEGER REFERENCES par(id) ON DELETE CASCADE)'));
  exec(sql('INSERT INTO par VALUES (1)'), sql('INSERT INTO kid VALUES (1, 1)'));
  const [dropped] = exec(sql('DROP TABLE IF EXISTS "par"'));
  expect(dropped).toMatchObject({ ok: false, error: { code: ErrorCode.BAD_REQUEST, message: expect.stringContaining('kid refers to it') } });
  const [emptied] = exec(sql('DELETE FROM par'));
  const [ok] = exec(sql('DROP TABLE par'));
  expect(emptied.ok && ok.ok).toBe(true);
  expect(follower.tableChecksums()).toEqual(leader.tableChecksums());
  expect(follower.query('SELECT count(*) AS n FROM kid').rows[0].n).toBe(0);
});

test('rows of a rowid table whose primary key holds NULLs (several rows share it) are changed by rowid, forwards and in a rewind', () => {
  exec(sql('CREATE TABLE np(a TEXT, b TEXT, v INTEGER, PRIMARY KEY (a, b))'));
  exec(sql("INSERT INTO np VALUES ('x', NULL, 1), ('x', NULL, 2), ('y', 'z', 3)"));
  const keep = follower.lastLsn;
  const sums = follower.tableChecksums();
  exec(sql("UPDATE np SET v = 20 WHERE v = 2"), sql('DELETE FROM np WHERE v = 1'), sql("UPDATE np SET rowid = 99 WHERE a = 'y'"));
  expect(follower.tableChecksums()).toEqual(leader.tableChecksums());
  expect(follower.query('SELECT rowid AS r, v FROM np ORDER BY rowid').rows).toEqual(leader.query('SELECT rowid AS r, v FROM np ORDER BY rowid').rows);
  follower.rewindTo(keep);
  expect(follower.tableChecksums()).toEqual(sums);
});

test('a rewind names rows with rowids beyond 2^53 exactly (Snowflake-sized INTEGER PRIMARY KEYs, tables without a key)', () => {
  exec(sql('CREATE TABLE m(id INTEGER PRIMARY KEY, body TEXT)'), sql('CREATE TABLE n(a, b)'));
  exec(sql("INSERT INTO m VALUES (1234567890123456768, 'kept')"), sql('INSERT INTO n(rowid, a, b) VALUES (9007199254740993, 1, 2)'));
  const keep = follower.lastLsn;
  const sums = follower.tableChecksums();
  // 1234567890123456769 rounds to ...768 as a double: the rewind deleted 'kept' and kept 'undone'.
  exec(sql("INSERT INTO m VALUES (1234567890123456769, 'undone')"), sql('UPDATE n SET b = 3'), sql("UPDATE m SET body = 'changed' WHERE id = 1234567890123456768"));
  follower.rewindTo(keep);
  expect(follower.tableChecksums()).toEqual(sums);
  expect(follower.query('SELECT CAST(id AS TEXT) AS id, body FROM m').rows).toEqual([{ id: '1234567890123456768', body: 'kept' }]);
  expect(follower.query('SELECT CAST(rowid AS TEXT) AS r, b FROM n').rows).toEqual([{ r: '9007199254740993', b: 2 }]);
});

test('a schema that row-based replication cannot follow is refused with the request that makes it: a column hiding the rowid, a foreign key to its own table that rewrites rows on update; sqlite_sequence is not written', () => {
  const refused = (o: ReturnType<typeof exec>[number], pattern: RegExp) => {
    expect(o.ok).toBe(false);
    if (!o.ok) {
      expect(o.error.code).toBe('BAD_REQUEST');
      expect(o.error.message).toMatch(pattern);
    }
  };
  const before = leader.lastLsn;
  refused(exec(sql('CREATE TABLE category(code TEXT PRIMARY KEY, parent TEXT REFERENCES category(code) ON UPDATE CASCADE)'))[0], /foreign key to itself with ON UPDATE CASCADE/);
  refused(exec(sql('CREATE TABLE emp(id INTEGER PRIMARY KEY, boss INTEGER REFERENCES emp(id) ON UPDATE SET NULL)'))[0], /ON UPDATE SET NULL/);
  refused(exec(sql('CREATE TABLE t(rowid TEXT, v)'))[0], /column named rowid/);
  refused(exec(sql('CREATE TABLE sheet(Oid INTEGER, colid INTEGER, value TEXT, PRIMARY KEY (Oid, colid))'))[0], /column named Oid/);
  expect(leader.lastLsn).toBe(before); // nothing of them committed
  expect(leader.query("SELECT count(*) AS n FROM sqlite_master WHERE name IN ('category', 'emp', 't', 'sheet')").rows).toEqual([{ n: 0 }]);
  // What can be followed is accepted: NO ACTION / RESTRICT, ON DELETE CASCADE, and rowid as the key of a WITHOUT ROWID table.
  exec(sql('CREATE TABLE cat(code TEXT PRIMARY KEY, parent TEXT REFERENCES cat(code) ON UPDATE RESTRICT ON DELETE CASCADE)'));
  exec(sql('CREATE TABLE w(rowid TEXT PRIMARY KEY, v) WITHOUT ROWID'));
  exec(sql("INSERT INTO cat VALUES ('ROOT', 'ROOT'), ('A', 'ROOT')"), sql("INSERT INTO w VALUES ('r1', 1)"));
  exec(sql("UPDATE w SET v = 2 WHERE rowid = 'r1'"), sql("DELETE FROM cat WHERE code = 'ROOT'"));
  // Added later by ALTER TABLE: refused the same way.
  refused(exec(sql('ALTER TABLE cat ADD COLUMN up TEXT REFERENCES cat(code) ON UPDATE CASCADE'))[0], /foreign key to itself/);
  exec(sql('CREATE TABLE seq(id INTEGER PRIMARY KEY AUTOINCREMENT, v)'), sql('INSERT INTO seq(v) VALUES (1)'));
  refused(exec(sql("UPDATE sqlite_sequence SET seq = 1000 WHERE name = 'seq'"))[0], /sqlite_sequence .* not replicated/);
  expect(leader.query("SELECT seq FROM sqlite_sequence WHERE name = 'seq'").rows).toEqual([{ seq: 1 }]);
  expect(follower.tableChecksums()).toEqual(leader.tableChecksums());
});

test('a request whose transaction fails as a whole (a deferred foreign key at COMMIT, ON CONFLICT ROLLBACK) fails alone, with its own error; its group commits', () => {
  exec(sql('CREATE TABLE parent(id INTEGER PRIMARY KEY)'), sql('CREATE TABLE child(id INTEGER PRIMARY KEY, pid INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)'));
  exec(sql('CREATE TABLE u(k INTEGER PRIMARY KEY, v TEXT UNIQUE ON CONFLICT ROLLBACK)'), sql("INSERT INTO u VALUES (1, 'taken')"), sql('INSERT INTO parent VALUES (1)'));
  const before = leader.lastLsn;
  const outs = exec(
    sql('INSERT INTO child VALUES (1, 1)'),
    sql('INSERT INTO child VALUES (2, 99)'), // no parent 99: found only at COMMIT
    sql("INSERT INTO u VALUES (2, 'taken')"), // ends the whole transaction
    sql('INSERT INTO child VALUES (3, 1)'),
  );
  expect(outs.map((o) => (o.ok ? 'ok' : o.error.code))).toEqual(['ok', 'CONSTRAINT', 'SQL_ERROR', 'ok']);
  expect(outs[1].ok ? '' : outs[1].error.message).toMatch(/FOREIGN KEY constraint failed/);
  expect(leader.lastLsn).toBe(before + 2);
  expect(leader.query('SELECT id FROM child ORDER BY id').rows).toEqual([{ id: 1 }, { id: 3 }]);
  expect(follower.tableChecksums()).toEqual(leader.tableChecksums());
});

test('a request that changes far more than one replication message holds is stopped while it runs (413), not after capturing it all', () => {
  exec(sql('CREATE TABLE items(id INTEGER PRIMARY KEY, n INTEGER NOT NULL, pad TEXT NOT NULL)'));
  for (let i = 0; i < 10; i++) {
    const out = exec(sql("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 2000) INSERT INTO items(n, pad) SELECT 0, printf('%0100d', x) FROM c"));
    expect(out[0].ok).toBe(true);
  }
  const before = { lsn: leader.lastLsn, sums: leader.tableChecksums() };
  const [big] = exec(sql('UPDATE items SET n = n + 1')); // 20,000 rows, both images: ~6 MB of captured changes
  expect(big.ok).toBe(false);
  if (!big.ok) {
    expect(big.error.code).toBe('PAYLOAD_TOO_LARGE');
    expect(big.error.message).toMatch(/changes more than \d+ bytes of rows/);
  }
  expect({ lsn: leader.lastLsn, sums: leader.tableChecksums() }).toEqual(before);
  // Split, it goes through.
  expect(exec(sql('UPDATE items SET n = n + 1 WHERE id <= 2000'))[0].ok).toBe(true);
  expect(follower.tableChecksums()).toEqual(leader.tableChecksums());
});

test('TEXT that is not valid UTF-8 is refused (it would reach followers as other bytes); a real U+FFFD and the same bytes as a BLOB replicate exactly', () => {
  exec(sql('CREATE TABLE t(id INTEGER PRIMARY KEY, v)'));
  const before = leader.lastLsn;
  for (const bad of ["CAST(x'ff' AS TEXT)", "CAST(x'c0af' AS TEXT)", 'char(55296)']) {
    const [o] = exec(sql(`INSERT INTO t(v) VALUES (${bad})`));
    expect([bad, o.ok ? 'ok' : o.error.code]).toEqual([bad, 'BAD_REQUEST']);
    if (!o.ok) expect(o.error.message).toMatch(/not valid UTF-8/);
  }
  expect(leader.lastLsn).toBe(before);
  exec(sql('INSERT INTO t(v) VALUES (?)', ['a\uFFFDb']), sql("INSERT INTO t(v) VALUES (x'ff')"), sql("UPDATE t SET v = v || 'c' WHERE typeof(v) = 'text'"));
  const bytes = (st: Store) => st.query("SELECT typeof(v) AS type, hex(CAST(v AS BLOB)) AS hex FROM t ORDER BY id").rows;
  expect(bytes(follower)).toEqual(bytes(leader));
  expect(bytes(leader)).toEqual([{ type: 'text', hex: '61EFBFBD6263' }, { type: 'blob', hex: 'FF' }]);
});

test('a query whose rows would not fit one answer stops while it reads them (413), however large the whole result', () => {
  exec(sql('CREATE TABLE t(id INTEGER PRIMARY KEY)'));
  // 200 MB of rows if built whole (it took a replica to 1.2 GB before the size check).
  expect(() => leader.query('WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 10000) SELECT zeroblob(20000) AS b FROM c')).toThrow(
    expect.objectContaining({ code: 'PAYLOAD_TOO_LARGE', message: expect.stringMatching(new RegExp(`more than ${RESULT_BYTES_MAX} bytes`)) }),
  );
  expect(leader.query('SELECT zeroblob(1000) AS b').rows).toHaveLength(1);
});

test('the WAL is cut back once a long read (a snapshot being made) that made it grow has ended', () => {
  exec(sql('CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB)'));
  const wal = () => fs.statSync(`${leader.file}-wal`).size;
  const reader = new Database(leader.file, { readonly: true });
  reader.exec('BEGIN');
  reader.prepare('SELECT count(*) FROM t').get(); // holds checkpoints back, as the snapshot worker does
  for (let i = 0; i < 200; i++) exec(sql(`INSERT OR REPLACE INTO t VALUES (${i % 5}, randomblob(200000))`));
  expect(wal()).toBeGreaterThan(WAL_JOURNAL_SIZE_LIMIT_BYTES);
  reader.exec('COMMIT');
  reader.close();
  for (let i = 0; i < 200; i++) exec(sql(`INSERT OR REPLACE INTO t VALUES (${i % 5}, randomblob(200000))`));
  expect(wal()).toBeLessThanOrEqual(WAL_JOURNAL_SIZE_LIMIT_BYTES + 1024 * 1024);
});

test('a failing request rolls back alone; its neighbours commit', () => {
  exec(sql('CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)'));
  const before = leader.lastLsn;
  const outs = exec(
    sql("INSERT INTO t(v) VALUES ('ok1')"),
    { statements: [{ sql: "INSERT INTO t(v) VALUES ('half')" }, { sql: 'INSERT INTO t(v) VALUES (NULL)' }] },
    sql('INSERT INTO nosuch VALUES (1)'),
    sql('SELEC 1'),
    sql('PRAGMA journal_mode = DELETE'),
    sql('DELETE FROM _flotilla_log'),
    sql("INSERT INTO t(v) VALUES ('ok2')"),
  );
  expect(outs.map((o) => (o.ok ? 'ok' : o.error.code))).toEqual([
    'ok',
    ErrorCode.CONSTRAINT,
    ErrorCode.NO_SUCH_TABLE,
    ErrorCode.SQL_ERROR,
    ErrorCode.BAD_REQUEST,
    ErrorCode.BAD_REQUEST,
    'ok',
  ]);
  expect(leader.lastLsn).toBe(before + 2);
  expect(follower.query('SELECT v FROM t ORDER BY id').rows).toEqual([{ v: 'ok1' }, { v: 'ok2' }]);
  expect(follower.tableChecksums()).toEqual(leader.tableChecksums());
});

test('an idempotency key is applied once, on the leader and after replication', () => {
  exec(sql('CREATE TABLE t(v)'));
  const req = { statements: [{ sql: 'INSERT INTO t VALUES (1)' }], idempotencyKey: 'k1' };
  const [first] = exec(req);
  const [again] = exec(req);
  expect(first.ok && again.ok && again.replayed && again.lsn === first.lsn).toBe(true);
  expect(leader.query('SELECT count(*) AS n FROM t').rows[0].n).toBe(1);
  // The follower knows the key too, so a new leader would also answer the retry from memory.
  expect(follower.query('SELECT count(*) AS n FROM t').rows[0].n).toBe(1);
});

test('an idempotency key outlives its log entry, until it is older than the retention window', () => {
  exec(sql('CREATE TABLE t(v)'));
  const req = { statements: [{ sql: 'INSERT INTO t VALUES (1)' }], idempotencyKey: 'k-trim' };
  const [first] = exec(req);
  exec(sql('INSERT INTO t VALUES (2)'));
  leader.truncateLogThrough(leader.lastLsn);
  follower.truncateLogThrough(follower.lastLsn);
  const [again] = exec(req);
  expect(again).toMatchObject({ ok: true, replayed: true, lsn: (first as { lsn: number }).lsn });
  expect(leader.query('SELECT count(*) AS n FROM t').rows[0].n).toBe(2);
  // Forgotten once old enough: on every replica, by the time of the write (replicated with the entry).
  expect(leader.trimIdempotencyKeys(Date.now() - 60_000)).toBe(0);
  expect(leader.trimIdempotencyKeys(Date.now() + 1)).toBe(1);
  expect(follower.trimIdempotencyKeys(Date.now() + 1)).toBe(1);
  const [late] = exec(req);
  expect(late).toMatchObject({ ok: true, replayed: false });
});

test('an idempotency key reused for a different request is refused (409); its retry gets the same answer, RETURNING rows too', () => {
  exec(sql('CREATE TABLE r(id INTEGER PRIMARY KEY, v TEXT)'));
  const req = { statements: [{ sql: 'INSERT INTO r(v) VALUES (?) RETURNING id, v', params: ['a'] }], idempotencyKey: 'k-ret' };
  const [first] = exec(req);
  expect(first.ok && first.results[0]).toMatchObject({ rows: [{ id: 1, v: 'a' }] });
  const before = leader.lastLsn;
  const [other] = exec({ ...req, statements: [{ sql: 'INSERT INTO r(v) VALUES (?) RETURNING id, v', params: ['b'] }] });
  expect(other).toMatchObject({ ok: false, error: { code: ErrorCode.CONFLICT } });
  expect(leader.lastLsn).toBe(before);
  const [again] = exec(req);
  expect(again).toMatchObject({ ok: true, replayed: true });
  expect(again.ok && again.results).toEqual(first.ok && first.results);
  // The same on a replica that never saw the first request (a new leader after failover).
  expect(follower.query('SELECT count(*) AS n FROM r').rows[0].n).toBe(1);
  follower.startCapture();
  follower.beginEpoch(2);
  const [onNew] = follower.executeBatch([req], 2);
  expect(onNew).toMatchObject({ ok: true, replayed: true });
  expect(onNew.ok && onNew.results).toEqual(first.ok && first.results);
  const [otherOnNew] = follower.executeBatch([{ ...req, statements: [{ sql: 'DELETE FROM r' }] }], 2);
  expect(otherOnNew).toMatchObject({ ok: false, error: { code: ErrorCode.CONFLICT } });
});

test('a database made before the key table had ts and req is migrated at open; its old keys still replay', () => {
  const file = path.join(dir, 'old.sqlite');
  const db = new Database(file);
  db.exec(`CREATE TABLE _flotilla_idem(key TEXT PRIMARY KEY, lsn INTEGER NOT NULL, epoch INTEGER NOT NULL, results TEXT NOT NULL) WITHOUT ROWID;
    INSERT INTO _flotilla_idem VALUES ('old-key', 0, 0, '[]');`);
  db.close();
  const s = Store.open(file);
  try {
    s.startCapture();
    s.beginEpoch(1);
    const [r] = s.executeBatch([{ statements: [{ sql: 'CREATE TABLE x(v)' }], idempotencyKey: 'old-key' }], 1);
    expect(r).toMatchObject({ ok: true, replayed: true }); // no digest stored: any request replays, as before
    expect(s.trimIdempotencyKeys(1)).toBe(1); // ts 0: older than any window
  } finally {
    s.close();
  }
});

test('queries refuse writes and report the LSN they reflect', () => {
  exec(sql('CREATE TABLE t(v)'), sql('INSERT INTO t VALUES (1)'));
  expect(() => leader.query('INSERT INTO t VALUES (2)')).toThrow(expect.objectContaining({ code: ErrorCode.WRITE_IN_QUERY }));
  expect(() => leader.query('SELECT * FROM nosuch')).toThrow(expect.objectContaining({ code: ErrorCode.NO_SUCH_TABLE }));
  const r = follower.query('SELECT v FROM t');
  expect(r).toEqual({ rows: [{ v: 1 }], lsn: follower.lastLsn });
});

test('an entry out of order or with a bad checksum is refused and nothing is applied', () => {
  const outs = leader.executeBatch([sql('CREATE TABLE t(v)'), sql('INSERT INTO t VALUES (1)')], 1);
  const entries = outs.map((o) => (o.ok ? (o.entry as LogEntry) : null)) as LogEntry[];
  expect(() => follower.applyEntries([entries[1]])).toThrow(DivergenceError);
  expect(() => follower.applyEntries([{ ...entries[0], crc: entries[0].crc ^ 1 }])).toThrow(/checksum/);
  expect(follower.lastLsn).toBe(0);
  follower.applyEntries(entries);
  expect(follower.lastLsn).toBe(2);
});

test('state survives reopening, and a snapshot carries its exact LSN', async () => {
  exec(sql('CREATE TABLE t(v)'));
  for (let i = 0; i < 50; i++) exec(sql('INSERT INTO t VALUES (?)', [i]));
  const snap = await leader.snapshotTo(path.join(dir, 'snap.sqlite'));
  expect(snap.lsn).toBe(leader.lastLsn);
  const own = new Database(path.join(dir, 'fresh.sqlite'));
  own.exec('CREATE TABLE mine(v)');
  own.close();
  const fresh = Store.open(path.join(dir, 'fresh.sqlite'));
  const replaced = fresh.replaceWithSnapshot(snap.file);
  expect(fresh.lastLsn).toBe(leader.lastLsn);
  expect(fresh.tableChecksums()).toEqual(leader.tableChecksums());
  // The database it replaced is kept aside, whole, for a paced removal; nothing else is left.
  expect(replaced).toBe(replacedFileFor(fresh.file));
  const old = new Database(replaced!, { readonly: true });
  expect(old.prepare("SELECT name FROM sqlite_master WHERE name = 'mine'").pluck().get()).toBe('mine');
  old.close();
  expect(fs.existsSync(snap.file)).toBe(false);
  expect(leftoverFiles(fresh.file)).toEqual([replaced]);
  await expect(removeFilePaced(replaced!)).resolves.toBe(true);
  expect(leftoverFiles(fresh.file)).toEqual([]);
  fresh.close();
  follower.close();
  follower = Store.open(path.join(dir, 'follower.sqlite'));
  expect(follower.lastLsn).toBe(leader.lastLsn);
});

test('a snapshot reports its LSN, then progress while it grows, and hashes every chunk of the finished file', async () => {
  exec(sql('CREATE TABLE b(id INTEGER PRIMARY KEY, data BLOB NOT NULL)'), sql('CREATE TABLE s(k TEXT PRIMARY KEY, v) WITHOUT ROWID'));
  // 24 MiB of 256 KiB rows (one per transaction: the log holds them as hex, under the entry limit):
  // several 8 MiB flush intervals, so progress is reported before the end.
  for (let i = 0; i < 96; i++) exec(sql('INSERT INTO b(data) VALUES (randomblob(?))', [262144]));
  exec(sql("INSERT INTO s VALUES ('a', 1), ('b', 2)"));
  const chunkBytes = 1024 * 1024;
  const events: string[] = [];
  const progress: number[] = [];
  let completeBytes = -1;
  const snap = await leader.snapshotTo(path.join(dir, 'snap.sqlite'), {
    chunkBytes,
    listener: {
      onStarted: (lsn) => events.push(`started ${lsn}`),
      onProgress: (bytes) => progress.push(bytes),
      onComplete: (bytes) => {
        completeBytes = bytes;
        events.push('complete');
      },
    },
  });
  expect(events).toEqual([`started ${leader.lastLsn}`, 'complete']);
  expect(snap.lsn).toBe(leader.lastLsn);
  expect(progress.length).toBeGreaterThan(0);
  expect([...progress].sort((x, y) => x - y)).toEqual(progress);
  expect(progress[progress.length - 1]).toBeLessThan(completeBytes);
  const file = fs.readFileSync(snap.file);
  expect(completeBytes).toBe(file.length);
  expect(snap.bytes).toBe(file.length);
  const chunks = Math.ceil(file.length / chunkBytes);
  expect(snap.chunkHashes.length).toBe(32 * chunks);
  for (let i = 0; i < chunks; i++) {
    const want = createHash('sha256').update(file.subarray(i * chunkBytes, (i + 1) * chunkBytes)).digest();
    expect(snap.chunkHashes.subarray(32 * i, 32 * i + 32).equals(want)).toBe(true);
  }
  const fresh = Store.open(path.join(dir, 'fresh.sqlite'));
  fresh.replaceWithSnapshot(snap.file);
  expect(fresh.tableChecksums()).toEqual(leader.tableChecksums());
  expect(fresh.oldestLsn()).toBe(fresh.lastLsn + 1); // the log is not copied
  fresh.close();
});

test('a snapshot stops when aborted', async () => {
  exec(sql('CREATE TABLE b(id INTEGER PRIMARY KEY, data BLOB NOT NULL)'));
  for (let i = 0; i < 8; i++) exec(sql('INSERT INTO b(data) VALUES (randomblob(?))', [262144]));
  const abort = new AbortController();
  const made = leader.snapshotTo(path.join(dir, 'snap.sqlite'), { chunkBytes: 1 << 20, signal: abort.signal, listener: { onStarted: () => abort.abort() } });
  await expect(made).rejects.toThrow(/aborted/);
});

test('rewind undoes transactions newest first with their before-images and keeps them in the quarantine', () => {
  exec(sql('CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)'), sql('CREATE TABLE kv(k TEXT PRIMARY KEY, v) WITHOUT ROWID'), sql('CREATE TABLE nopk(a, b)'));
  exec(sql("INSERT INTO t(id, v) VALUES (1, 'a'), (2, 'b')"), sql("INSERT INTO kv VALUES ('x', 1)"), sql('INSERT INTO nopk VALUES (1, 1), (2, 2)'));
  const keep = follower.lastLsn;
  const sumsBefore = follower.tableChecksums();
  // The "old leader's" unreplicated tail: every kind of change.
  exec(
    sql("UPDATE t SET v = 'changed', id = 10 WHERE id = 1"),
    sql('DELETE FROM t WHERE id = 2'),
    sql("INSERT INTO t(v) VALUES ('new')"),
    sql("UPDATE kv SET k = 'y', v = 2"),
    sql('DELETE FROM nopk WHERE a = 1'),
    sql('UPDATE nopk SET b = 20'),
  );
  expect(follower.lastLsn).toBe(keep + 6);
  const undone = follower.rewindTo(keep);
  expect(undone.map((e) => e.lsn)).toEqual([keep + 6, keep + 5, keep + 4, keep + 3, keep + 2, keep + 1]);
  expect(follower.lastLsn).toBe(keep);
  expect(follower.tableChecksums()).toEqual(sumsBefore);
  const q = follower.quarantine.list('f');
  expect(q.map((t) => Number(t.lsn)).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6].map((i) => keep + i));
  expect(q.find((t) => Number(t.lsn) === keep + 2)!.changes).toEqual([expect.objectContaining({ op: 'del', t: 't' })]);
  // The log continues from the rewind point.
  expect(follower.readLogAfter(keep - 1, 1 << 20).map((e) => e.lsn)).toEqual([keep]);
});

test('a rewind over a schema change is refused (the caller re-seeds), and nothing is half-undone', () => {
  exec(sql('CREATE TABLE t(v)'), sql('INSERT INTO t VALUES (1)'));
  const keep = follower.lastLsn;
  exec(sql('INSERT INTO t VALUES (2)'), sql('CREATE TABLE u(x)'), sql('INSERT INTO t VALUES (3)'));
  const before = follower.tableChecksums();
  expect(() => follower.rewindTo(keep)).toThrow(/schema/);
  expect(follower.lastLsn).toBe(keep + 3);
  expect(follower.tableChecksums()).toEqual(before);
});

test('lastLsnOfEpoch tells where a follower of an older epoch diverged', () => {
  exec(sql('CREATE TABLE t(v)'));
  const end1 = leader.lastLsn;
  leader.beginEpoch(3);
  leader.executeBatch([sql('INSERT INTO t VALUES (1)')], 3);
  expect(leader.lastLsnOfEpoch(1)).toBe(end1);
  expect(leader.lastLsnOfEpoch(2)).toBe(end1);
  expect(leader.lastLsnOfEpoch(3)).toBe(leader.lastLsn);
  expect(leader.epochAt(leader.lastLsn)).toBe(3);
  expect(leader.epochAt(end1)).toBe(1);
});

test('syncWalAsync: resolves with the LSN committed before the call; a close or snapshot install during a flush is safe', async () => {
  leader.setDurability('deferred');
  exec(sql('CREATE TABLE f(k INTEGER PRIMARY KEY)'));
  exec(sql('INSERT INTO f VALUES (1)'));
  const flushing = leader.syncWalAsync();
  const lsnAtCall = leader.lastLsn;
  exec(sql('INSERT INTO f VALUES (2)')); // committed during the flush: not covered by it
  expect(await flushing).toBe(lsnAtCall);
  expect(await leader.syncWalAsync()).toBe(leader.lastLsn);

  // A follower whose files are replaced while its flush runs (the fd is closed only after it).
  follower.setDurability('deferred');
  follower.applyEntries([]);
  const snap = await leader.snapshotTo(path.join(dir, 'snap.sqlite'));
  const during = follower.syncWalAsync();
  follower.replaceWithSnapshot(snap.file);
  // It flushed the replaced file: it vouches for no LSN of the new one.
  await expect(during).resolves.toBe(0);
  expect(follower.lastLsn).toBe(snap.lsn);
  exec(sql('INSERT INTO f VALUES (3)'));
  await expect(follower.syncWalAsync()).resolves.toBe(follower.lastLsn);
  const closing = leader.syncWalAsync();
  leader.close();
  await expect(closing).resolves.toEqual(expect.any(Number));
  leader = Store.open(path.join(dir, 'leader.sqlite'));
  expect(leader.lastLsn).toBe(follower.lastLsn);
});

test('the WAL is written out to its preallocated size at open, does not grow under small writes, and recovers after a crash', () => {
  const wal = path.join(dir, 'leader.sqlite-wal');
  expect(fs.statSync(wal).size).toBe(WAL_PREALLOCATE_BYTES);
  exec(sql('CREATE TABLE w(k INTEGER PRIMARY KEY, v TEXT)'));
  for (let i = 0; i < 500; i++) exec(sql('INSERT INTO w VALUES (?, ?)', [i, 'x'.repeat(100)]));
  expect(fs.statSync(wal).size).toBe(WAL_PREALLOCATE_BYTES);
  // A crash: copies of the database and its WAL as they are on disk, without a close.
  fs.copyFileSync(path.join(dir, 'leader.sqlite'), path.join(dir, 'crashed.sqlite'));
  fs.copyFileSync(wal, path.join(dir, 'crashed.sqlite-wal'));
  const crashed = Store.open(path.join(dir, 'crashed.sqlite'));
  try {
    expect(crashed.lastLsn).toBe(leader.lastLsn);
    expect(crashed.tableChecksums()).toEqual(leader.tableChecksums());
  } finally {
    crashed.close();
  }
});

describe('removing large files a step at a time', () => {
  const MiB = 1024 * 1024;
  const fill = (file: string, bytes: number) => fs.writeFileSync(file, Buffer.alloc(bytes, 7));

  test('shrinks the file by one step per fdatasync, then unlinks it; the name is free at once', async () => {
    const file = path.join(dir, 'big.sqlite');
    fill(file, 40 * MiB + 5);
    const steps: number[] = [];
    const removal = removeFilePaced(file, { stepBytes: 8 * MiB, pauseMs: 1, onStep: (left) => steps.push(left) });
    // Renamed aside before the call returned: a new file of the same name is not touched.
    expect(fs.existsSync(file)).toBe(false);
    fs.writeFileSync(file, 'new');
    await expect(removal).resolves.toBe(true);
    expect(steps).toEqual([32 * MiB + 5, 24 * MiB + 5, 16 * MiB + 5, 8 * MiB + 5, 5]);
    expect(fs.readFileSync(file, 'utf8')).toBe('new');
    expect(fs.readdirSync(dir).filter((n) => n.startsWith('big.sqlite'))).toEqual(['big.sqlite']);
  });

  test('a missing file is no error; a small one goes in one step; a bad step size is refused', async () => {
    await expect(removeFilePaced(path.join(dir, 'absent'))).resolves.toBe(false);
    const small = path.join(dir, 'small');
    fill(small, 1000);
    const steps: number[] = [];
    await expect(removeFilePaced(small, { onStep: (left) => steps.push(left) })).resolves.toBe(true);
    expect(steps).toEqual([]);
    expect(fs.existsSync(small)).toBe(false);
    fill(small, 10);
    await expect(removeFilePaced(small, { stepBytes: 0 })).rejects.toThrow(/stepBytes must be positive/);
    expect(fs.existsSync(small)).toBe(true);
  });

  test('a directory in the way is refused, not removed', async () => {
    const sub = path.join(dir, 'sub');
    fs.mkdirSync(sub);
    fs.writeFileSync(path.join(sub, 'keep'), 'x');
    await expect(removeFilePaced(sub)).rejects.toThrow(/not a regular file/);
    expect(fs.readFileSync(path.join(sub, 'keep'), 'utf8')).toBe('x');
  });

  test('leftoverFiles names what an interrupted seed, snapshot or removal left, and nothing else', () => {
    const db = path.join(dir, 'db.sqlite');
    fs.writeFileSync(db, '');
    fs.writeFileSync(db + '-wal', '');
    fs.writeFileSync(path.join(dir, 'other.sqlite.snapshot.tmp'), '');
    expect(leftoverFiles(db)).toEqual([]);
    const snapshots = servedSnapshotsDirFor(db);
    fs.mkdirSync(snapshots);
    const expected = [seedFileFor(db), replacedFileFor(db), `${db}.replaced.removing-0a1b2c`, path.join(snapshots, 'a.sqlite')];
    for (const f of expected) fs.writeFileSync(f, 'x');
    expect(leftoverFiles(db).sort()).toEqual(expected.sort());
  });
});

test('syncWalAsync: a flush begun before a rewind vouches for nothing (its LSNs now name other transactions)', async () => {
  follower.setDurability('deferred');
  exec(sql('CREATE TABLE g(k INTEGER PRIMARY KEY)'));
  const keep = follower.lastLsn;
  exec(sql('INSERT INTO g VALUES (1)'), sql('INSERT INTO g VALUES (2)'));
  const flushing = follower.syncWalAsync();
  follower.rewindTo(keep);
  // The new leader's transactions take the same LSNs before the old flush returns.
  const fresh = Store.open(path.join(dir, 'other.sqlite'));
  try {
    fresh.setDurability('deferred');
    fresh.applyEntries(leader.readLogAfter(0, 1 << 20).filter((e) => e.lsn <= keep));
    fresh.startCapture();
    fresh.beginEpoch(2);
    const outs = fresh.executeBatch([sql('INSERT INTO g VALUES (7)'), sql('INSERT INTO g VALUES (8)')], 2);
    follower.applyEntries(outs.flatMap((o) => (o.ok && o.entry ? [o.entry] : [])));
  } finally {
    fresh.close();
  }
  expect(follower.lastLsn).toBe(keep + 2);
  expect(await flushing).toBe(0);
  expect(await follower.syncWalAsync()).toBe(keep + 2);
});

test('a rewound settings entry restores the settings it replaced (its before-image), not none', () => {
  const semi = { mode: 'semi-sync' as const, syncFollowers: 1, syncPolicy: 'block' as const, syncTimeoutMs: 2000 };
  const sync = { ...semi, mode: 'sync' as const };
  exec(sql('CREATE TABLE s(v)'));
  follower.applyEntries([leader.writeSettings(semi, 1)]);
  const keep = follower.lastLsn;
  follower.applyEntries([leader.writeSettings(sync, 1)]);
  exec(sql('INSERT INTO s VALUES (1)'));
  expect(follower.readSettings()).toEqual(sync);
  follower.rewindTo(keep);
  expect(follower.readSettings()).toEqual(semi);
  follower.rewindTo(keep - 1); // before any setting: none again
  expect(follower.readSettings()).toBeNull();
});

test('a REAL negative zero replicates as -0.0, not 0.0 (JSON has no -0), and checksums tell the two apart', () => {
  exec(sql('CREATE TABLE z(id INTEGER PRIMARY KEY, a REAL, b)'));
  exec(sql("INSERT INTO z(id, a, b) VALUES (1, -0.0, CAST('-0.0' AS REAL)), (2, 0.0, -1.5e-320 * 0)"));
  exec(sql('UPDATE z SET b = -0.0 WHERE id = 2'));
  const read = (db: string) => {
    const d = new Database(db, { readonly: true });
    try {
      return (d.prepare('SELECT id, a, b, typeof(a) AS ta FROM z ORDER BY id').all() as { id: number; a: number; b: number; ta: string }[]).map((r) => ({
        id: r.id,
        a: Object.is(r.a, -0) ? '-0' : String(r.a),
        b: Object.is(r.b, -0) ? '-0' : String(r.b),
        ta: r.ta,
      }));
    } finally {
      d.close();
    }
  };
  // A REAL column stores an integral REAL as an integer on disk (SQLite's own), so there -0.0 reads
  // back as 0.0 on every replica alike; a column without affinity keeps it.
  const expected = [
    { id: 1, a: '0', b: '-0', ta: 'real' },
    { id: 2, a: '0', b: '-0', ta: 'real' },
  ];
  expect(read(path.join(dir, 'leader.sqlite'))).toEqual(expected);
  expect(read(path.join(dir, 'follower.sqlite'))).toEqual(expected);
  expect(follower.tableChecksums()).toEqual(leader.tableChecksums());
  // A positive zero in its place changes the checksum.
  const before = leader.tableChecksums().z.sha256;
  exec(sql('UPDATE z SET b = 0.0 WHERE id = 1'));
  expect(leader.tableChecksums().z.sha256).not.toBe(before);
  expect(follower.tableChecksums()).toEqual(leader.tableChecksums());
});

test("a write that changes nothing answers the last entry's LSN with that entry's epoch (after a failover, not the new one)", () => {
  exec(sql('CREATE TABLE e(k INTEGER PRIMARY KEY)'));
  const last = leader.lastLsn;
  leader.beginEpoch(2); // promoted; nothing written in epoch 2 yet
  const [noop] = leader.executeBatch([sql('UPDATE e SET k = k WHERE k < 0')], 2);
  expect(noop).toMatchObject({ ok: true, lsn: last, epoch: 1, entry: null });
  expect(leader.epochAt(last)).toBe(1);
  // In a group after a logged write of epoch 2, the last entry is that write's.
  const outs = leader.executeBatch([sql('INSERT INTO e VALUES (1)'), sql('UPDATE e SET k = k WHERE k < 0')], 2);
  expect(outs.map((o) => (o.ok ? [o.lsn, o.epoch] : o.error.code))).toEqual([
    [last + 1, 2],
    [last + 1, 2],
  ]);
});

test('an epoch this node began but wrote nothing in leaves its history once it applies older-epoch entries past that start', () => {
  exec(sql('CREATE TABLE h(v)'));
  const behind = follower.lastLsn;
  // Promoted while behind: epoch 2 would start at behind + 1, but nothing was written in it.
  follower.beginEpoch(2);
  // The old leader had more of epoch 1; the node follows a leader that has them and applies them.
  const outs = leader.executeBatch([sql('INSERT INTO h VALUES (1)'), sql('INSERT INTO h VALUES (2)')], 1);
  follower.applyEntries(outs.flatMap((o) => (o.ok && o.entry ? [o.entry] : [])));
  expect(follower.epochHistory().map((h) => h.epoch)).not.toContain(2);
  // Once those entries are trimmed, the history alone names their epoch: 1, not the epoch never written.
  follower.truncateLogThrough(follower.lastLsn);
  expect(follower.epochAt(behind + 1)).toBe(1);
  expect(follower.epochAt(behind + 2)).toBe(1);
  // An epoch that starts later (merged from a leader's history) is kept.
  follower.mergeEpochHistory([{ epoch: 3, startLsn: String(follower.lastLsn + 2) }]);
  const more = leader.executeBatch([sql('INSERT INTO h VALUES (3)')], 1);
  follower.applyEntries(more.flatMap((o) => (o.ok && o.entry ? [o.entry] : [])));
  expect(follower.epochHistory().map((h) => h.epoch)).toContain(3);
});

describe('statement deadlines (statementTimeoutMs)', () => {
  const TIMEOUT_MS = 150;
  /** Runs until SQLite is told to stop: counts for ever, inserts nothing. */
  const RUNAWAY_INSERT = 'INSERT INTO d(v) SELECT x FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c) WHERE x < 0';
  const RUNAWAY_SELECT = 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) AS n FROM c';
  let timed: Store;
  let copy: Store;
  /**
   * SQL time is also counted per turn of the event loop (a timer stamps each): these tests are
   * synchronous, so each lets the timers run first, as a server does between requests.
   */
  const nextTurn = () => new Promise((r) => setTimeout(r, 2 * SQL_TURN_TICK_MS));
  /** As the leader does: requests refused for a spent turn run again in the next one; outcomes in request order. */
  async function runAsLeader(requests: WriteInput[]) {
    const outcomes: ReturnType<Store['executeBatch']> = new Array(requests.length);
    let pending = requests.map((r, i) => i);
    for (let round = 0; pending.length > 0 && round < 10; round++) {
      await nextTurn();
      const outs = timed.executeBatch(pending.map((i) => requests[i]), 1);
      const again: number[] = [];
      outs.forEach((o, j) => (!o.ok && isTurnSpent(o.error) ? again.push(pending[j]) : (outcomes[pending[j]] = o)));
      pending = again;
    }
    return outcomes;
  }

  beforeEach(async () => {
    await nextTurn();
    timed = Store.open(path.join(dir, 'timed.sqlite'), { statementTimeoutMs: TIMEOUT_MS });
    timed.startCapture();
    timed.beginEpoch(1);
    copy = Store.open(path.join(dir, 'copy.sqlite'));
    const outs = timed.executeBatch([sql('CREATE TABLE d(v INTEGER)')], 1);
    copy.applyEntries(outs.flatMap((o) => (o.ok && o.entry ? [o.entry] : [])));
  });

  afterEach(() => {
    timed.close();
    copy.close();
  });

  test('this build has them: the guard extension was built and loaded', () => {
    expect(timed.statementDeadlines).toBe(true);
    expect(leader.statementDeadlines).toBe(false); // opened without a deadline
  });

  test('a query that never ends is stopped at the deadline with STATEMENT_TIMEOUT, and the next one runs', async () => {
    await nextTurn();
    const started = Date.now();
    expect(() => timed.query(RUNAWAY_SELECT)).toThrow(expect.objectContaining({ code: ErrorCode.STATEMENT_TIMEOUT }));
    expect(Date.now() - started).toBeGreaterThanOrEqual(TIMEOUT_MS - 5);
    await nextTurn();
    expect(timed.query('SELECT 1 AS one').rows).toEqual([{ one: 1 }]);
  });

  test('in a group commit, a write that never ends fails alone; the requests around it commit once, in order', async () => {
    await nextTurn();
    const lsn = timed.lastLsn;
    // The two around it run again without it (in a later turn when the runaway took this one's time).
    const outs = await runAsLeader([sql('INSERT INTO d(v) VALUES (1)'), sql(RUNAWAY_INSERT), sql('INSERT INTO d(v) VALUES (2)')]);
    expect(outs.map((o) => (o.ok ? 'ok' : o.error.code))).toEqual(['ok', ErrorCode.STATEMENT_TIMEOUT, 'ok']);
    expect(outs.flatMap((o) => (o.ok ? [o.lsn] : []))).toEqual([lsn + 1, lsn + 2]);
    expect(timed.lastLsn).toBe(lsn + 2);
    expect(timed.query('SELECT v FROM d ORDER BY rowid').rows).toEqual([{ v: 1 }, { v: 2 }]);
    // The log holds exactly those two, and a follower applying it ends up the same.
    copy.applyEntries(timed.readLogAfter(lsn, 1 << 20));
    expect(copy.tableChecksums()).toEqual(timed.tableChecksums());
    expect((await runAsLeader([sql('INSERT INTO d(v) VALUES (3)')]))[0].ok).toBe(true);
  });

  test('a read that never ends inside a write request fails that request only (its transaction survives)', async () => {
    await nextTurn();
    const outs = await runAsLeader([sql('INSERT INTO d(v) VALUES (10)'), { statements: [{ sql: 'INSERT INTO d(v) VALUES (11)' }, { sql: RUNAWAY_SELECT }] }, sql('INSERT INTO d(v) VALUES (12)')]);
    expect(outs.map((o) => (o.ok ? 'ok' : o.error.code))).toEqual(['ok', ErrorCode.STATEMENT_TIMEOUT, 'ok']);
    expect(timed.query('SELECT v FROM d ORDER BY rowid').rows).toEqual([{ v: 10 }, { v: 12 }]);
  });

  test('SQL time is bounded per turn of the event loop: a second runaway in the same turn is refused at once, retryably', async () => {
    await nextTurn();
    expect(() => timed.query(RUNAWAY_SELECT)).toThrow(expect.objectContaining({ code: ErrorCode.STATEMENT_TIMEOUT }));
    const started = Date.now();
    let second: unknown;
    try {
      timed.query(RUNAWAY_SELECT);
    } catch (err) {
      second = err;
    }
    expect(second).toMatchObject({ code: ErrorCode.UNAVAILABLE });
    expect(isTurnSpent(second)).toBe(true); // the leader runs such a write again in a later turn
    expect(Date.now() - started).toBeLessThan(TIMEOUT_MS); // refused, not run
    const [write] = timed.executeBatch([sql('INSERT INTO d(v) VALUES (20)')], 1);
    expect(!write.ok && isTurnSpent(write.error)).toBe(true);
    await nextTurn();
    expect(timed.executeBatch([sql('INSERT INTO d(v) VALUES (21)')], 1)[0].ok).toBe(true);
    expect(timed.query('SELECT v FROM d').rows).toEqual([{ v: 21 }]);
  });

  test('client SQL cannot disarm the deadline: the guard function refuses any other key', async () => {
    await nextTurn();
    expect(() => timed.query("SELECT flotilla_guard('guess', 0) AS g")).toThrow(expect.objectContaining({ code: ErrorCode.SQL_ERROR }));
    const [out] = await runAsLeader([{ statements: [{ sql: "SELECT flotilla_guard('guess', 0)" }, { sql: RUNAWAY_SELECT }] }]);
    expect(out.ok ? 'ok' : out.error.code).toBe(ErrorCode.SQL_ERROR);
    await nextTurn();
    expect(() => timed.query(RUNAWAY_SELECT)).toThrow(expect.objectContaining({ code: ErrorCode.STATEMENT_TIMEOUT }));
  });

  test('a deadline that passed between two statements still stops the next one, until it is disarmed', async () => {
    // SQLite clears an interrupt when a statement starts with none running: the watchdog interrupts
    // again every few ms past the deadline, so the request's next statement cannot run free.
    const db = new Database(path.join(dir, 'timed.sqlite'));
    try {
      const guard = StatementGuard.attach(db)!;
      guard.arm(5);
      expect(db.prepare('SELECT count(*) AS n FROM d').get()).toEqual({ n: 0 });
      await new Promise((r) => setTimeout(r, 30)); // the deadline passes with nothing running
      const started = Date.now();
      expect(() => db.prepare(RUNAWAY_SELECT).get()).toThrow(expect.objectContaining({ code: 'SQLITE_INTERRUPT' }));
      expect(Date.now() - started).toBeLessThan(1000);
      guard.disarm();
      // Disarmed: nothing stops the statements that follow, none is interrupted late.
      expect(db.prepare('SELECT 2 AS two').get()).toEqual({ two: 2 });
      await new Promise((r) => setTimeout(r, 30));
      expect(db.prepare('SELECT 3 AS three').get()).toEqual({ three: 3 });
    } finally {
      db.close();
    }
  });
});

test('other nodes\' known positions are kept in the node\'s own file, neither replicated nor copied by a snapshot, and unreadable contents read as none', async () => {
  expect(follower.readKnownPositions()).toEqual({});
  follower.writeKnownPositions({ a: { applied: 7, heardMs: 1000 } });
  expect(follower.readKnownPositions()).toEqual({ a: { applied: 7, heardMs: 1000 } });
  leader.writeKnownPositions({ b: { applied: 3, heardMs: 2000 } });
  exec(sql('CREATE TABLE t(k INTEGER PRIMARY KEY)'));
  expect(follower.readKnownPositions()).toEqual({ a: { applied: 7, heardMs: 1000 } });
  // A snapshot of the leader is a new node's database: what the leader knew of others stays behind.
  const snap = await leader.snapshotTo(path.join(dir, 'positions-snap.sqlite'));
  const seeded = Store.open(snap.file);
  try {
    expect(seeded.readKnownPositions()).toEqual({});
    expect(leader.readKnownPositions()).toEqual({ b: { applied: 3, heardMs: 2000 } });
  } finally {
    seeded.close();
  }
  const file = path.join(dir, 'follower.sqlite');
  const set = (value: string) => {
    follower.close();
    const raw = new Database(file);
    raw.prepare("UPDATE _flotilla_meta SET value = ? WHERE key = 'known_positions'").run(value);
    raw.close();
    follower = Store.open(file);
  };
  set('{not json');
  expect(follower.readKnownPositions()).toEqual({});
  set(JSON.stringify({ a: { applied: -1, heardMs: 1 }, b: { applied: 3 }, c: null, d: { applied: 4, heardMs: 5 } }));
  expect(follower.readKnownPositions()).toEqual({ d: { applied: 4, heardMs: 5 } });
});
