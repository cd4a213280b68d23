import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { tailOf } from './local-cluster';

describe('tailOf', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-tail-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('gives the last lines, without the trailing newline', () => {
    const f = path.join(dir, 'a.log');
    fs.writeFileSync(f, 'one\ntwo\nthree\nfour\n');
    expect(tailOf(f, 2)).toBe('three\nfour');
    expect(tailOf(f, 10)).toBe('one\ntwo\nthree\nfour');
  });

  it('reads only the end of a large file', () => {
    const f = path.join(dir, 'big.log');
    fs.writeFileSync(f, `${'x'.repeat(200 * 1024)}\nlast\n`);
    expect(tailOf(f, 1)).toBe('last');
  });

  it('says so for an empty file and for one it cannot read', () => {
    const f = path.join(dir, 'empty.log');
    fs.writeFileSync(f, '');
    expect(tailOf(f, 3)).toBe('(empty)');
    expect(tailOf(path.join(dir, 'missing.log'), 3)).toMatch(/^\(unreadable: ENOENT/);
  });
});
