import { ConfigError, envNameOf, flagNameOf, loadConfig } from './config';

test('names are the same everywhere: flag, environment variable, Helm value', () => {
  expect(envNameOf('syncTimeoutMs')).toBe('FLOTILLA_SYNC_TIMEOUT_MS');
  expect(flagNameOf('syncTimeoutMs')).toBe('--sync-timeout-ms');
});

test('defaults, then environment, then explicit overrides', () => {
  const c = loadConfig({ syncFollowers: 2 }, { FLOTILLA_MODE: 'semi-sync', FLOTILLA_SYNC_FOLLOWERS: '3', FLOTILLA_SYNC_TIMEOUT_MS: '750' });
  expect(c).toMatchObject({ mode: 'semi-sync', syncFollowers: 2, syncTimeoutMs: 750, syncPolicy: 'block', leaseTtlMs: 1500 });
});

test('every bad setting is named, with its environment variable', () => {
  let err: unknown;
  try {
    loadConfig({}, { FLOTILLA_MODE: 'eventual', FLOTILLA_SYNC_TIMEOUT_MS: 'soon', FLOTILLA_CLUSTER: 'Bad_Name' });
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ConfigError);
  const problems = (err as ConfigError).problems.join('\n');
  expect(problems).toMatch(/mode \(FLOTILLA_MODE="eventual"\)/);
  expect(problems).toMatch(/syncTimeoutMs \(FLOTILLA_SYNC_TIMEOUT_MS=/);
  expect(problems).toMatch(/cluster \(FLOTILLA_CLUSTER="Bad_Name"\)/);
});

test('a lease renewed less often than twice per TTL is refused', () => {
  expect(() => loadConfig({ leaseTtlMs: 1000, leaseRenewMs: 600 }, {})).toThrow(/at most half of leaseTtlMs/);
  // One port for both of a replica's listeners: refused at start, not a crash loop after taking the lease.
  expect(() => loadConfig({}, { FLOTILLA_HTTP_PORT: '8080', FLOTILLA_API_PORT: '8080' })).toThrow(/apiPort .* and httpPort .* are both 8080/);
});

test('an unknown setting is refused rather than ignored', () => {
  expect(() => loadConfig({ sycnTimeoutMs: 5 }, {})).toThrow(/unknown setting "sycnTimeoutMs"/);
});
