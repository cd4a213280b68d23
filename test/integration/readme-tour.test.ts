/**
 * The README's 5-minute tour, run as written: `flotilla up` in a fresh directory, then the tour's
 * shell block with only the port and the CLI's path changed. Every curl must answer without an
 * error, and the answers the README shows (`# → ...`) must be the ones a fresh cluster gives.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { findRepoRoot, readClusterFile } from '@flotilla/local-cluster';
import { freePort, httpJson, stopAll, tempDir, waitFor } from '@flotilla/testing';

jest.setTimeout(120_000);

afterAll(async () => {
  await stopAll(); // removes the temp dir
});

const ROOT = findRepoRoot();
const CLI = path.join(ROOT, 'dist', 'apps', 'cli', 'src', 'main.js');

/** The first ```sh block after `heading` in README.md. */
function shellBlockAfter(heading: string): string {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const from = readme.indexOf(heading);
  if (from < 0) throw new Error(`README.md has no "${heading}"`);
  const m = /```sh\n([\s\S]*?)```/.exec(readme.slice(from));
  if (!m) throw new Error(`no sh block after "${heading}"`);
  return m[1];
}

/** The JSON the README shows after `# → ` for each command that has one, in order. */
function shownAnswers(block: string): unknown[] {
  return [...block.matchAll(/^# → (\{.*\})$/gm)].map((m) => JSON.parse(m[1]));
}

test('the README tour works as written on a fresh cluster, and answers as the README shows', async () => {
  const dir = tempDir('flotilla-tour-');
  const dataDir = path.join(dir, '.flotilla');
  const port = await freePort();
  const log = fs.openSync(path.join(dir, 'up.log'), 'a');
  const up = spawn(process.execPath, [CLI, 'up', '--replicas', '3', '--port', String(port), '--data-dir', dataDir], { cwd: dir, stdio: ['ignore', log, log] });
  fs.closeSync(log);
  const exited = new Promise<number | null>((resolve) => up.on('exit', (code) => resolve(code)));
  try {
    // As a person would start the tour: once the cluster is up, every replica heard by the gateway.
    await waitFor(
      async () => {
        const view = (await httpJson('GET', `http://127.0.0.1:${port}/v1/cluster`).catch(() => null))?.body as { leader?: string; nodes?: { healthy: boolean }[] } | undefined;
        return view?.leader && view.nodes?.length === 3 && view.nodes.every((n) => n.healthy) ? view : null;
      },
      { what: 'a leader and three healthy replicas', timeoutMs: 60_000 },
    );
    expect(readClusterFile(dataDir)?.processes.length).toBeGreaterThanOrEqual(6); // nats, 3 replicas, 2 monitors, gateway

    const block = shellBlockAfter('## A 5-minute tour');
    const script = block.replaceAll('localhost:8080', `localhost:${port}`).replaceAll('node dist/apps/cli/src/main.js', `node ${CLI}`);
    expect(script).not.toContain('8080');
    // Each curl's answer between markers; everything else (the status table) passes through.
    const wrapped = `set -euo pipefail\ncurl() { echo '<<<'; command curl --fail-with-body "$@"; echo; echo '>>>'; }\n${script}`;
    const run = spawnSync('bash', ['-c', wrapped], { cwd: dir, encoding: 'utf8', timeout: 60_000, env: { ...process.env, FLOTILLA_GATEWAY_URL: `http://127.0.0.1:${port}` } }); // the CLI's default is :8080 too
    if (run.status !== 0 || run.stderr !== '') {
      throw new Error(`the tour failed (exit ${run.status}):\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}\n--- up.log\n${fs.readFileSync(path.join(dir, 'up.log'), 'utf8').slice(-3000)}`);
    }
    const answers = [...run.stdout.matchAll(/<<<\n([\s\S]*?)\n>>>/g)].map((m) => JSON.parse(m[1]) as Record<string, unknown>);
    expect(answers).toHaveLength((block.match(/^curl /gm) ?? []).length);
    for (const a of answers) expect(a).not.toHaveProperty('error');

    // What the README shows: the first write exactly (its epoch is 1 unless a lease was lost while
    // seven processes started on two cores); the read with any replica as servedBy.
    const [firstWrite, firstRead] = shownAnswers(block) as [Record<string, unknown>, Record<string, unknown>];
    expect(answers[0]).toEqual({ ...firstWrite, epoch: expect.any(Number) });
    expect(firstWrite.epoch).toBe(1);
    expect(answers[1]).toEqual({ ...firstRead, servedBy: expect.stringMatching(/^replica-\d$/), lsn: expect.any(String) });
    // The cluster as the gateway sees it, and as `flotilla status` prints it.
    expect(answers[2]).toMatchObject({ leader: expect.stringMatching(/^replica-\d$/), nodes: expect.arrayContaining([expect.objectContaining({ name: 'replica-0' })]) });
    // The status table: its header, then a row per replica.
    expect(run.stdout).toMatch(/^name +role +epoch +applied +flushed +lagMs +sync +healthy *\n(.*\n)*replica-0 .*\n(.*\n)*replica-1 .*\n(.*\n)*replica-2 /m);
    // The write to the leader's own API.
    expect(answers[3]).toMatchObject({ lsn: expect.any(String), epoch: answers[0].epoch });
  } finally {
    up.kill('SIGTERM');
    // It stops its processes and exits; if it hangs, it and they are killed so nothing outlives the test.
    const hung = setTimeout(() => {
      const file = readClusterFile(dataDir);
      for (const p of file?.processes ?? []) {
        try {
          if (p.pid) process.kill(p.pid, 'SIGKILL');
        } catch {
          /* gone already */
        }
      }
      up.kill('SIGKILL');
    }, 30_000);
    const code = await exited;
    clearTimeout(hung);
    if (code !== 0) throw new Error(`flotilla up exited ${code} on SIGTERM:\n${fs.readFileSync(path.join(dir, 'up.log'), 'utf8').slice(-3000)}`);
  }
});
