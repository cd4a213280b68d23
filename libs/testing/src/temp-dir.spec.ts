import { keepTestDirs } from './temp-dir';

describe('keepTestDirs', () => {
  it('is on for any value of FLOTILLA_KEEP_TEST_DIRS but empty and 0', () => {
    expect(keepTestDirs({})).toBe(false);
    expect(keepTestDirs({ FLOTILLA_KEEP_TEST_DIRS: '' })).toBe(false);
    expect(keepTestDirs({ FLOTILLA_KEEP_TEST_DIRS: '0' })).toBe(false);
    expect(keepTestDirs({ FLOTILLA_KEEP_TEST_DIRS: '1' })).toBe(true);
    expect(keepTestDirs({ FLOTILLA_KEEP_TEST_DIRS: 'yes' })).toBe(true);
  });
});
