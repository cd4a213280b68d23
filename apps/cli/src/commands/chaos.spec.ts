import type { ClusterFile } from '@flotilla/local-cluster';
import { CliError } from '../gateway-client';
import { chaosLine, chaosTarget, CHAOS_SIGNALS } from './chaos';

const file: ClusterFile = {
  cluster: 'flotilla',
  supervisorPid: 100,
  natsUrl: 'nats://127.0.0.1:4222',
  gatewayUrl: 'http://127.0.0.1:8080',
  dataDir: '/d',
  startedAt: '',
  updatedAt: '',
  processes: [
    { name: 'nats', kind: 'nats', pid: 101, ports: {}, logFile: '', restarts: 0, state: 'running' },
    { name: 'replica-0', kind: 'replica', pid: 102, ports: {}, logFile: '', restarts: 0, state: 'running' },
    { name: 'replica-1', kind: 'replica', pid: null, ports: {}, logFile: '', restarts: 1, state: 'restarting' },
  ],
};
const alive = () => true;

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CliError);
    return `${(e as CliError).code}: ${(e as CliError).message}`;
  }
  throw new Error('expected a CliError');
}

describe('flotilla chaos', () => {
  it('maps kill/pause/resume to SIGKILL/SIGSTOP/SIGCONT', () => {
    expect(CHAOS_SIGNALS).toEqual({ kill: 'SIGKILL', pause: 'SIGSTOP', resume: 'SIGCONT' });
  });

  it('finds the pid of a running process', () => {
    expect(chaosTarget(file, { action: 'kill', node: 'replica-0', dataDir: '/d' }, alive)).toBe(102);
  });

  it('refuses an unknown name, listing the known ones', () => {
    expect(codeOf(() => chaosTarget(file, { action: 'kill', node: 'replica-7', dataDir: '/d' }, alive))).toBe(
      'UNKNOWN_NODE: no process named "replica-7" in /d (have: nats, replica-0, replica-1)',
    );
  });

  it('refuses a process that is down, a missing cluster and a dead supervisor', () => {
    expect(codeOf(() => chaosTarget(file, { action: 'pause', node: 'replica-1', dataDir: '/d' }, alive))).toMatch(/^NOT_RUNNING: replica-1 is not running \(state restarting\)/);
    expect(codeOf(() => chaosTarget(undefined, { action: 'kill', node: 'replica-0', dataDir: '/d' }, alive))).toMatch(/^NO_CLUSTER: no local cluster in \/d .*flotilla up --data-dir \/d/);
    expect(codeOf(() => chaosTarget(file, { action: 'kill', node: 'replica-0', dataDir: '/d' }, () => false))).toMatch(/^NO_CLUSTER: .*supervisor, pid 100, is gone/);
  });

  it('says what happened and what to do next', () => {
    expect(chaosLine({ action: 'pause', node: 'replica-0', dataDir: '/d' }, 102)).toBe(
      'chaos: replica-0 (pid 102) paused with SIGSTOP: it stops heartbeating. Continue it: flotilla chaos resume replica-0',
    );
  });
});
