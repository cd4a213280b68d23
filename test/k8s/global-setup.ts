/**
 * Jest globalSetup of the `k8s` project: makes sure the cached kube-apiserver, kubectl, etcd and
 * helm exist (scripts/k8s-tools.sh — seconds when cached, minutes on the first run, with progress
 * on stderr), so `npm test` and `npx jest --selectProjects k8s` provision what they need too.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

export default function globalSetup(): void {
  const script = join(__dirname, '..', '..', 'scripts', 'k8s-tools.sh');
  const result = spawnSync('bash', [script], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (result.status !== 0) {
    throw new Error(`${script} failed (exit ${result.status ?? result.signal}); see its output above`);
  }
}
