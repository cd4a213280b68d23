import { upProblem, UpOptions } from './up';

const options = (o: Partial<UpOptions> = {}): UpOptions => ({ replicas: 3, port: 8080, dataDir: '.flotilla', restart: true, cluster: 'flotilla', logLevel: 'info', ...o });

describe('flotilla up refuses what could not start, before spawning anything', () => {
  it('accepts the defaults and a sync mode with enough followers', () => {
    expect(upProblem(options(), {})).toBeNull();
    expect(upProblem(options({ mode: 'semi-sync' }), {})).toBeNull();
    expect(upProblem(options({ replicas: 1 }), {})).toBeNull();
  });

  it('refuses a sync mode with no follower to be synchronous', () => {
    expect(upProblem(options({ replicas: 1, mode: 'semi-sync' }), {})).toMatch(/mode semi-sync needs syncFollowers \(1\) < replicas \(1\)/);
    expect(upProblem(options({ mode: 'semi-sync' }), { FLOTILLA_SYNC_FOLLOWERS: '3' })).toMatch(/syncFollowers \(3\) < replicas \(3\)/);
    expect(upProblem(options({ replicas: 2 }), { FLOTILLA_MODE: 'sync', FLOTILLA_SYNC_FOLLOWERS: '2' })).toMatch(/mode sync/);
  });

  it('names a bad FLOTILLA_ variable of the shell, which every process would refuse', () => {
    expect(upProblem(options(), { FLOTILLA_SYNC_TIMEOUT_MS: 'soon' })).toMatch(/syncTimeoutMs \(FLOTILLA_SYNC_TIMEOUT_MS="soon"\)/);
  });
});
