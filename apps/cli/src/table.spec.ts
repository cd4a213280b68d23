import { columnsOf, formatCell, formatTable } from './table';

describe('formatCell', () => {
  it('shows SQL values readably', () => {
    expect([null, 'a', 1.5, { $i: '9007199254740993' }, { $b: 'AQID' }, true].map(formatCell)).toEqual([
      'NULL',
      'a',
      '1.5',
      '9007199254740993',
      "x'010203'",
      'true',
    ]);
  });

  it('shortens long blobs', () => {
    expect(formatCell({ $b: Buffer.alloc(100).toString('base64') })).toMatch(/^x'0{64}…' \(100 bytes\)$/);
  });
});

describe('formatTable', () => {
  it('aligns text left and numbers right under a rule', () => {
    expect(formatTable(['id', 'name'], [{ id: 1, name: 'ann' }, { id: 10, name: null }])).toEqual([
      'id  name',
      '--  ----',
      ' 1  ann',
      '10  NULL',
    ]);
  });

  it('escapes newlines so one row stays one line', () => {
    expect(formatTable(['a'], [{ a: 'x\ny' }])[2]).toBe('x\\ny');
  });

  it('collects columns in first-seen order', () => {
    expect(columnsOf([{ a: 1, b: 2 }, { c: 3, a: 4 }])).toEqual(['a', 'b', 'c']);
  });
});
