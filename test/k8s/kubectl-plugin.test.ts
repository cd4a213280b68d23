/**
 * bin/kubectl-flotilla: kubectl finds it as a plugin and `kubectl flotilla ...` is the flotilla
 * CLI (needs `npm run build`, which `npm run test:k8s` does first).
 */
import { symlinkSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { removeTempDir, tempDir } from '@flotilla/testing';
import { freePort, runTool } from './support';

jest.setTimeout(60_000);

const PLUGIN = join(__dirname, '..', '..', 'bin', 'kubectl-flotilla');

describe('kubectl flotilla', () => {
  let pathDir: string;
  let env: NodeJS.ProcessEnv;

  beforeAll(() => {
    // Installed the way the plugin's comment says: a symlink on PATH.
    pathDir = tempDir('flotilla-plugin-');
    symlinkSync(PLUGIN, join(pathDir, 'kubectl-flotilla'));
    env = { PATH: `${pathDir}${delimiter}${process.env.PATH}`, FLOTILLA_GATEWAY_URL: '' };
  });

  afterAll(() => {
    if (pathDir) removeTempDir(pathDir);
  });

  test('is listed by kubectl plugin list', async () => {
    const listed = await runTool('kubectl', ['plugin', 'list'], { env });
    expect(listed.stdout).toContain(join(pathDir, 'kubectl-flotilla'));
  });

  test('runs the CLI: status and switchover are there', async () => {
    const help = await runTool('kubectl', ['flotilla', '--help'], { env });
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^\s+status\b/m);
    expect(help.stdout).toMatch(/^\s+switchover\b/m);
  });

  test('a gateway that is not there is a clear error, not a stack trace', async () => {
    const port = await freePort();
    const status = await runTool('kubectl', ['flotilla', 'status', '--gateway', `http://127.0.0.1:${port}`], { env });
    expect(status.code).not.toBe(0);
    expect(status.stderr).toContain(`127.0.0.1:${port}`);
    expect(status.stderr).not.toMatch(/\n\s+at .+\(.+:\d+:\d+\)/);
  });
});
