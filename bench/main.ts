/**
 * `npm run bench`: Flotilla's benchmark suite. Prints markdown tables to stdout and writes every
 * number to a JSON file. Sections (docs/benchmarks.md says what each number means):
 *
 *   write     write throughput and p50/p99 through the gateway, 1/16/64 clients, 0 vs 2 followers
 *   lag       replication lag p50/p99 at half the best 2-follower write rate
 *   catchup   catch-up rate of a follower that was down during writes
 *   snapshot  snapshot seeding MB/s next to `cp` of the same database file; write latency during a join
 *   modes     async / semi-sync / sync next to PostgreSQL 15 streaming replication
 *   failover  leader kill -9 → first successful write (needs the monitor)
 *   cpu       CPU per write of each process on the write path (async and semi-sync, 64 clients)
 *
 * Flags: --quick (short runs, a smoke test), --only <section[,section]>, --out <file.json>
 * (default bench/results/<date>.json). Every load generator runs in worker threads, targets
 * loopback only and stops by itself.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { findRepoRoot } from '@flotilla/local-cluster';
import { cpuTable, measureCpu } from './cpu';
import { BenchCluster, liveClusters, useRoot } from './bench-cluster';
import { machineInfo } from './report';
import {
  catchupTable, failoverTable, KV_TABLE_DDL, lagTable, livePostgres, measureCatchup, measureFailover, measureLag,
  measureModes, measureSnapshot, measureWritePairs, modesTable, probeMaxRate, Settings, settingsFor, snapshotTable, writeTable,
} from './sections';

export const SECTIONS = ['write', 'lag', 'catchup', 'snapshot', 'modes', 'failover', 'cpu'] as const;
type Section = (typeof SECTIONS)[number];

interface Args {
  quick: boolean;
  only: Set<Section>;
  out: string;
}

function usage(): string {
  return `usage: node dist/bench/main.js [--quick] [--only ${SECTIONS.join('|')}[,...]] [--out file.json]`;
}

function parseArgs(argv: string[], root: string): Args {
  let quick = false;
  let only = new Set<Section>(SECTIONS);
  let out = '';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') quick = true;
    else if (a === '--only' || a.startsWith('--only=')) {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      const names = (v ?? '').split(',').filter(Boolean);
      const bad = names.filter((n) => !(SECTIONS as readonly string[]).includes(n));
      if (!names.length || bad.length) throw new Error(`--only: unknown section ${bad.join(', ') || '(none)'}; sections: ${SECTIONS.join(', ')}`);
      only = new Set(names as Section[]);
    } else if (a === '--out' || a.startsWith('--out=')) {
      out = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      if (!out) throw new Error('--out needs a file name');
    } else if (a === '-h' || a === '--help') {
      console.log(usage());
      process.exit(0);
    } else throw new Error(`unknown argument ${a}\n${usage()}`);
  }
  if (!out) out = path.join(root, 'bench', 'results', `${new Date().toISOString().slice(0, 10)}${quick ? '-quick' : ''}.json`);
  return { quick, only, out: path.resolve(out) };
}

let privateRootDir: string | undefined;

/**
 * A private copy of the built tree (dist/, package.json, a node_modules link) that every process of
 * the run starts from: other sessions rebuild the shared dist/ at any time, and a replica restarted
 * mid-run (catch-up, failover) once loaded a half-rebuilt tree and crashed.
 */
function makePrivateRoot(root: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-bench-root-'));
  fs.copyFileSync(path.join(root, 'package.json'), path.join(dir, 'package.json'));
  fs.mkdirSync(path.join(dir, 'apps'));
  fs.cpSync(path.join(root, 'dist'), path.join(dir, 'dist'), { recursive: true });
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'));
  return dir;
}

/** Kills whatever the run started: on Ctrl-C, on a crash, at exit. */
function cleanupNow(): void {
  for (const bc of liveClusters) bc.cluster.killAllNow();
  for (const pg of livePostgres) pg.stop();
  if (privateRootDir) fs.rmSync(privateRootDir, { recursive: true, force: true });
}

async function main(): Promise<void> {
  const root = findRepoRoot();
  const args = parseArgs(process.argv.slice(2), root);
  const s: Settings = settingsFor(args.quick);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      console.error(`bench: ${sig}, stopping everything`);
      cleanupNow();
      process.exit(130);
    });
  }
  privateRootDir = makePrivateRoot(root);
  useRoot(privateRootDir);
  const machine = machineInfo(os.tmpdir());
  const git = (a: string[]) => spawnSync('git', a, { cwd: root, encoding: 'utf8' }).stdout?.trim() ?? '';
  const results: Record<string, unknown> = {
    settings: s, sections: [...args.only], machine,
    // The product code measured: commit, plus whether apps/ or libs/ differed from it.
    gitCommit: git(['rev-parse', 'HEAD']), productTreeDirty: git(['status', '--porcelain', '--', 'apps', 'libs']) !== '',
  };
  const sections: Record<string, unknown> = {};
  results.results = sections;
  const save = () => {
    results.finishedAt = new Date().toISOString();
    results.loadAvgAtEnd = os.loadavg().map((x) => +x.toFixed(2));
    fs.mkdirSync(path.dirname(args.out), { recursive: true });
    fs.writeFileSync(args.out, JSON.stringify(results, null, 2) + '\n');
  };
  const print = (title: string, body: string) => console.log(`\n## ${title}\n\n${body}\n`);
  const loads = (name: string, fn: () => Promise<void>) => async () => {
    const before = os.loadavg()[0];
    const t0 = Date.now();
    try {
      await fn();
    } catch (e) {
      sections[name] = { ...(sections[name] as object), error: (e as Error).stack ?? String(e) };
      print(name, `**failed**: ${(e as Error).message}`);
    }
    sections[`${name}Meta`] = { seconds: Math.round((Date.now() - t0) / 1000), loadAvg1mBefore: +before.toFixed(2), loadAvg1mAfter: +os.loadavg()[0].toFixed(2) };
    save();
  };

  console.log(`# Flotilla benchmarks${args.quick ? ' (--quick)' : ''}\n`);
  console.log(`${machine.date} · ${machine.nproc} CPUs (${machine.cpuModel}) · node ${machine.node} · load average ${machine.loadAvgAtStart.join(' ')}`);

  // write, lag and catch-up share one 3-replica cluster; write also needs a 1-replica one.
  if (args.only.has('write') || args.only.has('lag') || args.only.has('catchup')) {
    let zero = args.only.has('write') ? await BenchCluster.start({ replicas: 1, ddl: [KV_TABLE_DDL] }) : undefined;
    let started: BenchCluster | undefined;
    try {
      const bc = (started = await BenchCluster.start({ replicas: 3, ddl: [KV_TABLE_DDL] }));
      let maxRate = 0;
      if (zero) {
        const z = zero;
        await loads('write', async () => {
          const write = await measureWritePairs(z, bc, s);
          maxRate = write.maxRateTwoFollowersPerS;
          sections.write = write;
          print('Write throughput through the gateway (single-row INSERT, closed loop)', writeTable(write));
        })();
        zero = undefined;
        await z.stop();
      }
      if ((args.only.has('lag') || args.only.has('catchup')) && !maxRate) maxRate = await probeMaxRate(bc, s);
      if (args.only.has('lag')) {
        await loads('lag', async () => {
          const lag = await measureLag(bc, s, maxRate / 2);
          sections.lag = lag;
          print('Replication lag at half the maximum write rate (2 async followers)', lagTable(lag));
        })();
      }
      if (args.only.has('catchup')) {
        await loads('catchup', async () => {
          const c = await measureCatchup(bc, s, maxRate / 2);
          sections.catchup = c;
          print('Catch-up of a follower that was down during writes', catchupTable(c));
        })();
      }
    } finally {
      await zero?.stop();
      await started?.stop();
    }
  }

  if (args.only.has('snapshot')) {
    await loads('snapshot', async () => {
      const x = await measureSnapshot(s);
      sections.snapshot = x;
      print(`Snapshot seeding of a new replica vs \`cp\` (≥ ${s.snapshotMb} MB of data)`, snapshotTable(x));
    })();
  }

  if (args.only.has('modes')) {
    await loads('modes', async () => {
      const m = await measureModes(s);
      sections.modes = m;
      print('Replication modes: Flotilla vs PostgreSQL 15 streaming replication (single-row INSERT transactions)', modesTable(m));
    })();
  }

  if (args.only.has('failover')) {
    await loads('failover', async () => {
      const f = await measureFailover(s);
      sections.failover = f;
      print('Failover: kill -9 of the leader → first successful write through the gateway', (f.available ? '' : `failover: not available (${f.reason})\n\n`) + failoverTable(f));
    })();
  }

  if (args.only.has('cpu')) {
    await loads('cpu', async () => {
      const c = [await measureCpu(s, 'async'), await measureCpu(s, 'semi-sync'), await measureCpu(s, 'semi-sync', 64, false, "leader's API"), await measureCpu(s, 'async', 1, true)];
      sections.cpu = c;
      print('Where the time goes: CPU per write of each process (64 and 1 clients, 3 replicas)', cpuTable(c));
    })();
  }

  save();
  fs.rmSync(privateRootDir, { recursive: true, force: true });
  console.log(`\nResults: ${args.out}`);
}

main().then(
  () => process.exit(0),
  (e: Error) => {
    console.error(`bench: ${e.stack ?? e.message}`);
    cleanupNow();
    process.exit(1);
  },
);
