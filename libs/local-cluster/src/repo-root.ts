import * as fs from 'node:fs';
import * as path from 'node:path';

/** The processes a local cluster runs from the built tree. */
export type AppName = 'replica' | 'gateway' | 'monitor';

/**
 * The repository root: `FLOTILLA_ROOT` if set, else the nearest directory above this file that
 * holds package.json and apps/ (works from libs/… under ts/jest and from dist/libs/… when built).
 */
export function findRepoRoot(start: string = __dirname, env: NodeJS.ProcessEnv = process.env): string {
  if (env.FLOTILLA_ROOT) return path.resolve(env.FLOTILLA_ROOT);
  let dir = path.resolve(start);
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'apps'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`cannot find the Flotilla repository root above ${start}; set FLOTILLA_ROOT`);
    dir = parent;
  }
}

/** Path of the built entry point of `app`: <root>/dist/apps/<app>/src/main.js (what `npm run build` emits). */
export function appEntry(app: AppName, root: string = findRepoRoot()): string {
  return path.join(root, 'dist', 'apps', app, 'src', 'main.js');
}
