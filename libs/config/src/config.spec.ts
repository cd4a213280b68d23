import { ConfigError, envNameOf, flagNameOf, leaseRequestTimeoutMs, loadConfig, overridesFromArgv } from './config';

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

test('a lease too short to outlast one missed renewal, or heartbeats too slow for the failure timeout, are refused', () => {
  // TTL 400, renew 200: valid 400 - 200 (margin) = 200 ms after each renewal, less than two renewals.
  expect(() => loadConfig({ leaseTtlMs: 400, leaseRenewMs: 200 }, {})).toThrow(/leaseTtlMs \(400\) is too short for leaseRenewMs \(200\)/);
  expect(() => loadConfig({ leaseTtlMs: 200, leaseRenewMs: 100 }, {})).toThrow(/too short/);
  expect(loadConfig({ leaseTtlMs: 600, leaseRenewMs: 200 }, {}).leaseTtlMs).toBe(600);
  expect(loadConfig({ leaseTtlMs: 3000, leaseRenewMs: 500 }, {}).leaseRenewMs).toBe(500); // the chart's values
  expect(() => loadConfig({}, { FLOTILLA_HEARTBEAT_INTERVAL_MS: '2000' })).toThrow(/failureTimeoutMs \(1000\) must be at least twice heartbeatIntervalMs \(2000\)/);
  expect(() => loadConfig({ syncTimeoutMs: 100 }, {})).toThrow(/syncTimeoutMs \(100\) must be at least twice heartbeatIntervalMs \(250\)/);
  expect(() => loadConfig({ syncTimeoutMs: 5000 }, {})).toThrow(/syncTimeoutMs \(5000\) must be below requestTimeoutMs \(5000\)/);
});

test('a statement deadline must end before the lease a renewal gives could run out', () => {
  // Defaults: valid 1500 - 300 (margin) = 1200 ms after a renewal, which can be 300 ms old: 900 ms,
  // of which one turn's SQL may take the deadline + 20 ms (a tick of the per-turn clock).
  expect(loadConfig({}, {}).statementTimeoutMs).toBe(500);
  expect(loadConfig({ statementTimeoutMs: 879 }, {}).statementTimeoutMs).toBe(879);
  expect(() => loadConfig({}, { FLOTILLA_STATEMENT_TIMEOUT_MS: '880' })).toThrow(/statementTimeoutMs \(880\) must be below 880 ms/);
  expect(loadConfig({ statementTimeoutMs: 0 }, {}).statementTimeoutMs).toBe(0); // none, at the user's risk
  // Not set: a shorter lease gets a shorter default (60% of its budget), not a refusal to start.
  expect(loadConfig({ leaseTtlMs: 600, leaseRenewMs: 200 }, {}).statementTimeoutMs).toBe(120);
  expect(loadConfig({ leaseTtlMs: 400, leaseRenewMs: 100 }, {}).statementTimeoutMs).toBe(60); // budget 100 ms
  expect(loadConfig({ leaseTtlMs: 300, leaseRenewMs: 50 }, {}).statementTimeoutMs).toBe(0); // budget 50 ms: no deadline fits
  expect(loadConfig({ leaseTtlMs: 3000, leaseRenewMs: 500 }, {}).statementTimeoutMs).toBe(500); // the chart's lease
  expect(() => loadConfig({ statementTimeoutMs: -1 }, {})).toThrow(/statementTimeoutMs/);
  // Below the per-turn SQL clock's resolution every request would be refused as busy.
  expect(() => loadConfig({ statementTimeoutMs: 5 }, {})).toThrow(/statementTimeoutMs \(5\) must be 0 \(no deadline\) or at least 50 ms/);
  expect(loadConfig({ statementTimeoutMs: 50 }, {}).statementTimeoutMs).toBe(50);
});

test('flags name the same settings and win over the environment', () => {
  const flags = overridesFromArgv(['--sync-timeout-ms', '700', '--mode=sync', '--node', 'replica-3']);
  expect(flags).toEqual({ syncTimeoutMs: '700', mode: 'sync', node: 'replica-3' });
  const c = loadConfig(flags, { FLOTILLA_SYNC_TIMEOUT_MS: '900', FLOTILLA_MODE: 'async' });
  expect({ syncTimeoutMs: c.syncTimeoutMs, mode: c.mode, node: c.node }).toEqual({ syncTimeoutMs: 700, mode: 'sync', node: 'replica-3' });
  expect(() => loadConfig(overridesFromArgv(['--sycn-timeout-ms', '5']), {})).toThrow(/unknown setting "sycnTimeoutMs"/);
  expect(() => overridesFromArgv(['--lease-ttl-ms'])).toThrow(/--lease-ttl-ms needs a value/);
  expect(() => overridesFromArgv(['replica-0'])).toThrow(/unexpected argument "replica-0"/);
  expect(() => loadConfig(overridesFromArgv(['--sync-timeout-ms', 'soon']), {})).toThrow(/syncTimeoutMs/);
});

test('a lease request is abandoned while the leader is still valid, so a hung one is retried in time', () => {
  expect(leaseRequestTimeoutMs(3000, 500)).toBe(800); // the chart: valid 2400 ms after each renewal
  expect(leaseRequestTimeoutMs(1500, 300)).toBe(400); // local defaults: valid 1200 ms
  expect(leaseRequestTimeoutMs(60_000, 10_000)).toBe(2000);
});

test('an unknown setting is refused rather than ignored', () => {
  expect(() => loadConfig({ sycnTimeoutMs: 5 }, {})).toThrow(/unknown setting "sycnTimeoutMs"/);
});
