import { isInternalTable, rowJson } from './table-checksums';

describe('rowJson', () => {
  it('writes 64-bit integers exactly and blobs as base64', () => {
    expect(rowJson([9007199254740993n, 1.5, 'x', null, Buffer.from([1, 2, 3])])).toBe('["9007199254740993",1.5,"x",null,{"$b":"AQID"}]');
  });
});

describe('isInternalTable', () => {
  it('skips Flotilla and SQLite tables only', () => {
    expect(['_flotilla_log', 'sqlite_sequence', 'users', 'flotilla'].map(isInternalTable)).toEqual([true, true, false, false]);
  });
});
