import * as path from 'node:path';
import { appEntry, findRepoRoot } from './repo-root';

describe('findRepoRoot / appEntry', () => {
  it('prefers FLOTILLA_ROOT', () => {
    expect(findRepoRoot(__dirname, { FLOTILLA_ROOT: '/opt/flotilla' })).toBe('/opt/flotilla');
  });

  it('finds the directory holding package.json and apps/ above this file', () => {
    expect(findRepoRoot(__dirname, {})).toBe(path.resolve(__dirname, '..', '..', '..'));
  });

  it('points at what tsc emits for an app', () => {
    expect(appEntry('replica', '/r')).toBe('/r/dist/apps/replica/src/main.js');
  });
});
