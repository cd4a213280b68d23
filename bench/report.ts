/**
 * Output helpers: markdown tables for stdout, number formatting, and the machine description that
 * goes with every result file.
 */
import { spawnSync } from 'node:child_process';
import * as os from 'node:os';

/** A markdown table; every cell already formatted. */
export function markdownTable(headers: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(headers), line(headers.map(() => '---')), ...rows.map(line)].join('\n');
}

/** Fixed decimals, or '—' for a missing value. */
export function fmt(n: number | undefined, decimals = 0): string {
  if (n === undefined || !Number.isFinite(n)) return '—';
  return n.toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

/**
 * A ratio with its target: "0.93× (target ≥ 0.8×) met". The verdict compares the unrounded ratio;
 * when two decimals would round a miss up to the target (0.7991 → "0.80"), three are shown.
 */
export function ratioCell(ratio: number | undefined, target: number): string {
  if (ratio === undefined || !Number.isFinite(ratio)) return '—';
  const met = ratio >= target;
  const shown = !met && Number(ratio.toFixed(2)) >= target ? ratio.toFixed(3) : ratio.toFixed(2);
  return `${shown}× (target ≥ ${target}×) ${met ? 'met' : 'MISSED'}`;
}

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 });
  return (r.stdout ?? '').trim();
}

/** What the numbers were measured on. */
export interface MachineInfo {
  date: string;
  hostname: string;
  nproc: string;
  cpuModel: string;
  lscpu: string;
  memory: string;
  disk: string;
  kernel: string;
  node: string;
  loadAvgAtStart: number[];
}

export function machineInfo(tmpDir: string): MachineInfo {
  const lscpu = sh('lscpu', []).split('\n').slice(0, 16).join('\n');
  return {
    date: new Date().toISOString(),
    hostname: os.hostname(),
    nproc: sh('nproc', []),
    cpuModel: os.cpus()[0]?.model ?? '?',
    lscpu,
    memory: sh('free', ['-h']),
    disk: sh('df', ['-h', tmpDir]),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    loadAvgAtStart: os.loadavg().map((x) => +x.toFixed(2)),
  };
}
