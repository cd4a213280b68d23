/**
 * Automatic failover end to end: real nats-server, 3 replicas, 2 failover monitors and the gateway
 * started by the local-cluster supervisor (`npm run build` first). The killed leader is kept down
 * (kill -9, then the supervisor is told not to restart it) until the test has seen what the
 * monitors did: a restarted old leader may re-take its own lease faster than the lease runs out,
 * which is a different (valid) recovery than the one under test.
 */
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import type { NatsConnection } from 'nats';
import { LeaseRecord, NatsKvLeaser } from '@flotilla/election';
import { LocalCluster } from '@flotilla/local-cluster';
import { httpJson, startLocalCluster, startNatsServer, stopAll, TcpProxy, waitFor, logLines } from '@flotilla/testing';
import { natsClient, startLoad } from './support';

jest.setTimeout(240_000);

const MONITORS = ['monitor-0', 'monitor-1'];

interface ClusterBody {
  leader: string | null;
  epoch: number;
  nodes: { name: string; role: string; lsn: string; healthy: boolean }[];
  failover: { state: string; reason?: string; monitor: string | null; lastFailover?: { from: string | null; to: string; epoch: number } };
}

async function clusterView(cluster: LocalCluster): Promise<ClusterBody> {
  const r = await httpJson('GET', `${cluster.gatewayUrl}/v1/cluster`);
  if (r.status !== 200) throw new Error(`GET /v1/cluster: ${r.status}`);
  return r.body as ClusterBody;
}

async function execute(cluster: LocalCluster, sql: string, params?: unknown[], idempotencyKey?: string) {
  return httpJson('POST', `${cluster.gatewayUrl}/v1/execute`, { statements: [{ sql, params }], ...(idempotencyKey ? { idempotencyKey } : {}) });
}

/** The leader once the gateway knows it and the active monitor reports ok. */
async function steadyLeader(cluster: LocalCluster): Promise<string> {
  return waitFor(
    async () => {
      const v = await clusterView(cluster);
      return v.leader && v.failover.state === 'ok' && v.nodes.filter((n) => n.healthy).length === cluster.replicaNames.length ? v.leader : null;
    },
    { what: 'a leader, every replica healthy and an active monitor reporting ok', timeoutMs: 60_000 },
  );
}

/** Name of the monitor that reports itself active on /healthz (exactly one must). */
async function activeMonitor(cluster: LocalCluster): Promise<string> {
  return waitFor(
    async () => {
      const states = await Promise.all(MONITORS.map(async (m) => ({ m, active: (await httpJson('GET', `${cluster.httpUrl(m)}/healthz`)).body?.active })));
      const active = states.filter((s) => s.active === true);
      return active.length === 1 && states.every((s) => typeof s.active === 'boolean') ? active[0].m : null;
    },
    { what: 'exactly one active monitor', timeoutMs: 30_000 },
  );
}


/** kill -9, and the supervisor does not start it again (until startProcess). */
async function killAndKeepDown(cluster: LocalCluster, name: string): Promise<void> {
  cluster.signal(name, 'SIGKILL');
  await cluster.stopProcess(name);
}

async function openLease(nc: NatsConnection): Promise<NatsKvLeaser> {
  return NatsKvLeaser.open(nc, 'flotilla-flotilla', 'leader');
}

async function readLease(leaser: NatsKvLeaser): Promise<LeaseRecord> {
  const r = await leaser.read();
  if (!r) throw new Error('no leader lease');
  return r;
}

/**
 * Sends keyed single-row writes one after another until one is acknowledged in an epoch above
 * `oldEpoch`; resolves with the time that took from `sinceMs` (performance.now()).
 */
async function firstWriteAfter(cluster: LocalCluster, table: string, oldEpoch: number, sinceMs: number, timeoutMs = 30_000) {
  let key = 1_000_000;
  return waitFor(
    async () => {
      const k = key++;
      const r = await execute(cluster, `INSERT INTO ${table}(k, v) VALUES (?, ?)`, [k, `probe-${k}`], `${table}-probe-${k}`);
      return r.status === 200 && r.body.epoch > oldEpoch ? { ms: performance.now() - sinceMs, epoch: r.body.epoch as number, lsn: r.body.lsn as string } : null;
    },
    { what: `a write acknowledged in an epoch above ${oldEpoch}`, timeoutMs, intervalMs: 10 },
  );
}

afterAll(async () => {
  await stopAll();
});

const CLI = path.resolve(__dirname, '..', '..', 'dist', 'apps', 'cli', 'src', 'main.js');

/** Runs the built `flotilla` CLI; resolves with its exit code and output. */
function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('failover: kill -9 of the leader under continuous writes', () => {
  let cluster: LocalCluster;
  let nc: NatsConnection;

  beforeAll(async () => {
    ({ cluster } = await startLocalCluster({ replicas: 3, monitor: true }));
    await cluster.waitUntilReady();
    nc = await natsClient(cluster.natsUrl);
  });

  afterAll(async () => {
    await nc?.close();
    await cluster?.stop();
  });

  test('a former follower takes the lease with epoch + 1 and accepts writes; the active monitor logs each decision', async () => {
    const create = await execute(cluster, 'CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT)');
    expect(create.status).toBe(200);
    const oldLeader = await steadyLeader(cluster);
    const monitor = await activeMonitor(cluster);
    const leaser = await openLease(nc);
    const before = await readLease(leaser);
    expect(before.holder).toBe(oldLeader);

    const load = startLoad(cluster.gatewayUrl, 'kv', { clients: 4, maxWrites: 1_000_000 });
    await waitFor(() => load.acked.length >= 200, { what: '200 acknowledged writes before the kill', timeoutMs: 30_000 });
    const ackedBeforeKill = load.acked.length;
    const killedAt = performance.now();
    await killAndKeepDown(cluster, oldLeader);

    const first = await firstWriteAfter(cluster, 'kv', before.epoch, killedAt);
    const after = await readLease(leaser);
    expect(after.holder).not.toBe(oldLeader);
    expect(cluster.replicaNames.filter((n) => n !== oldLeader)).toContain(after.holder);
    expect(after.epoch).toBe(before.epoch + 1);
    expect(first.epoch).toBe(before.epoch + 1);
    // eslint-disable-next-line no-console
    console.log(`failover: kill -9 of ${oldLeader} → first acknowledged write on ${after.holder} (epoch ${first.epoch}) after ${Math.round(first.ms)} ms`);

    // The client load goes on against the new leader.
    await waitFor(() => load.acked.length >= ackedBeforeKill + 300, { what: '300 more writes after the failover', timeoutMs: 30_000 });
    await load.stop();

    const view = await waitFor(async () => {
      const v = await clusterView(cluster);
      return v.leader === after.holder && v.failover.lastFailover?.epoch === after.epoch ? v : null;
    }, { what: 'the new leader and the failover in /v1/cluster', timeoutMs: 10_000 });
    expect(view.failover).toMatchObject({ state: 'ok', monitor, lastFailover: { from: oldLeader, to: after.holder, epoch: after.epoch } });

    const lines = logLines(cluster, monitor);
    const decisions = lines.filter((l) => ['leader failure detected', 'promoting', 'promoted'].includes(l.msg));
    expect(decisions.map((l) => l.msg)).toEqual(['leader failure detected', 'promoting', 'promoted']);
    expect(decisions[2]).toMatchObject({ from: oldLeader, to: after.holder, epoch: after.epoch });
    expect(lines.some((l) => l.msg === 'monitor active')).toBe(true);
    const standby = MONITORS.find((m) => m !== monitor)!;
    expect(logLines(cluster, standby).filter((l) => l.msg === 'promoting')).toEqual([]);

    // The old leader may come back now; whether it rejoins cleanly is the replica's rewind, not asserted here.
    await cluster.startProcess(oldLeader);
  });
});

describe('failover: every follower lags more than maxLagOnFailover', () => {
  let cluster: LocalCluster;
  let nc: NatsConnection;
  const proxies = new Map<string, TcpProxy>();
  const MAX_LAG = 5;
  const WRITES_WHILE_CUT = 20;

  beforeAll(async () => {
    // Each replica reaches NATS through its own proxy, so the followers can be cut off alone: entries
    // published while they are cut are lost to them (core NATS keeps nothing for absent subscribers),
    // which is real lag. (SIGSTOP is not: the entries wait in their sockets and arrive on SIGCONT.)
    const nats = await startNatsServer({ jetstream: true });
    for (const name of ['replica-0', 'replica-1', 'replica-2']) proxies.set(name, await TcpProxy.start(nats.port));
    ({ cluster } = await startLocalCluster({
      replicas: 3,
      monitor: true,
      natsUrl: nats.url,
      natsUrlFor: (name) => proxies.get(name)?.natsUrl,
      env: { FLOTILLA_MAX_LAG_ON_FAILOVER: String(MAX_LAG) },
    }));
    await cluster.waitUntilReady();
    nc = await natsClient(cluster.natsUrl);
  });

  afterAll(async () => {
    await nc?.close();
    await cluster?.stop();
  });

  test('no promotion; /v1/cluster and the monitor log say why; the returning old leader leads again', async () => {
    expect((await execute(cluster, 'CREATE TABLE lag(k INTEGER PRIMARY KEY, v TEXT)')).status).toBe(200);
    const leader = await steadyLeader(cluster);
    const monitor = await activeMonitor(cluster);
    const followers = cluster.replicaNames.filter((n) => n !== leader);
    const leaser = await openLease(nc);
    const before = await readLease(leaser);

    // Cut both followers off, write on the leader alone (async mode acknowledges without them).
    for (const f of followers) proxies.get(f)!.cut();
    let lastLsn = '0';
    for (let i = 0; i < WRITES_WHILE_CUT; i++) {
      const r = await execute(cluster, 'INSERT INTO lag(k, v) VALUES (?, ?)', [i, `v${i}`]);
      expect(r.status).toBe(200);
      lastLsn = r.body.lsn;
    }
    // The monitors hear the leader's position in its heartbeats, as the gateway does.
    await waitFor(async () => (await clusterView(cluster)).nodes.find((n) => n.name === leader)?.lsn === lastLsn, {
      what: `the leader heartbeating lsn ${lastLsn}`,
    });
    await killAndKeepDown(cluster, leader);
    for (const f of followers) proxies.get(f)!.heal();

    const view = await waitFor(async () => {
      const v = await clusterView(cluster);
      return v.failover.state === 'no-candidate' && followers.every((f) => new RegExp(`${f} lags \\d+ LSNs`).test(v.failover.reason ?? '')) ? v : null;
    }, { what: 'failover state no-candidate naming both lagging followers', timeoutMs: 20_000 });
    expect(view.failover.monitor).toBe(monitor);
    expect(view.failover.reason).toMatch(new RegExp(`^no eligible candidate: .*maxLagOnFailover ${MAX_LAG}`));
    expect(view.failover.reason).toContain(`${leader} is the failed leader`);

    // For 20 more status rounds (2 s) the monitor keeps waiting: the lease never moves.
    // Each round must hold (an expect inside waitFor would only retry it).
    for (let round = 0; round < 20; round++) {
      const v = await clusterView(cluster);
      expect(v.failover.state).toBe('no-candidate');
      expect(await readLease(leaser)).toMatchObject({ holder: leader, epoch: before.epoch });
      await new Promise((r) => setTimeout(r, 100));
    }

    const lines = logLines(cluster, monitor);
    const noCandidate = lines.filter((l) => l.msg === 'no eligible candidate');
    expect(noCandidate.length).toBeGreaterThanOrEqual(1);
    expect(String(noCandidate[noCandidate.length - 1].reason)).toMatch(/lags \d+ LSNs/);
    expect(lines.filter((l) => l.msg === 'promoting')).toEqual([]);
    expect(lines.some((l) => l.msg === 'leader failure detected' && l.leader === leader)).toBe(true);

    // The old leader comes back: it takes its own lease again and nothing it acknowledged is lost.
    await cluster.startProcess(leader);
    const back = await waitFor(async () => {
      const v = await clusterView(cluster);
      return v.leader === leader && v.failover.state === 'ok' ? v : null;
    }, { what: `${leader} leading again and the monitor ok`, timeoutMs: 30_000 });
    expect(back.epoch).toBeGreaterThan(before.epoch);
    const count = await httpJson('POST', `${cluster.gatewayUrl}/v1/query`, { sql: 'SELECT count(*) AS n FROM lag', consistency: 'strong' });
    expect(count.status).toBe(200);
    expect(count.body.rows[0].n).toBe(WRITES_WHILE_CUT);
  });
});

describe('failover: the active monitor dies, then the leader', () => {
  let cluster: LocalCluster;
  let nc: NatsConnection;

  beforeAll(async () => {
    ({ cluster } = await startLocalCluster({ replicas: 3, monitor: true }));
    await cluster.waitUntilReady();
    nc = await natsClient(cluster.natsUrl);
  });

  afterAll(async () => {
    await nc?.close();
    await cluster?.stop();
  });

  test('the standby monitor takes the monitor lease and performs the failover', async () => {
    expect((await execute(cluster, 'CREATE TABLE mon(k INTEGER PRIMARY KEY, v TEXT)')).status).toBe(200);
    const leader = await steadyLeader(cluster);
    const active = await activeMonitor(cluster);
    const standby = MONITORS.find((m) => m !== active)!;
    const leaser = await openLease(nc);
    const before = await readLease(leaser);

    await killAndKeepDown(cluster, active);
    await waitFor(async () => (await httpJson('GET', `${cluster.httpUrl(standby)}/healthz`)).body?.active === true, {
      what: `${standby} active after ${active} died`,
      timeoutMs: 10_000,
    });

    const load = startLoad(cluster.gatewayUrl, 'mon', { clients: 2, maxWrites: 1_000_000 });
    await waitFor(() => load.acked.length >= 100, { what: '100 writes before the leader is killed', timeoutMs: 30_000 });
    const killedAt = performance.now();
    await killAndKeepDown(cluster, leader);
    const first = await firstWriteAfter(cluster, 'mon', before.epoch, killedAt);
    const acked = load.acked.length;
    await waitFor(() => load.acked.length >= acked + 100, { what: '100 more writes on the new leader', timeoutMs: 30_000 });
    await load.stop();
    const after = await readLease(leaser);
    expect(after.epoch).toBe(before.epoch + 1);
    expect(after.holder).not.toBe(leader);
    // eslint-disable-next-line no-console
    console.log(`failover by the standby ${standby}: kill -9 of ${leader} → first acknowledged write on ${after.holder} after ${Math.round(first.ms)} ms`);

    const promoted = logLines(cluster, standby).filter((l) => l.msg === 'promoted');
    expect(promoted).toEqual([expect.objectContaining({ from: leader, to: after.holder, epoch: after.epoch })]);
    const view = await waitFor(async () => {
      const v = await clusterView(cluster);
      return v.failover.lastFailover?.epoch === after.epoch ? v : null;
    }, { what: 'the failover in /v1/cluster' });
    expect(view.failover).toMatchObject({ monitor: standby, state: 'ok', lastFailover: { from: leader, to: after.holder } });

    expect(logLines(cluster, active).filter((l) => l.msg === 'promoting')).toEqual([]);
  });

  test('flotilla chaos: the restarted monitor stands by; pausing the active one hands over, resuming it does not take back', async () => {
    // The monitor killed in the previous test is down; the other one is active.
    const other = MONITORS.find((m) => cluster.pid(m) === undefined)!;
    const active = MONITORS.find((m) => m !== other)!;
    await cluster.startProcess(other);
    await waitFor(async () => (await httpJson('GET', `${cluster.httpUrl(other)}/healthz`)).body?.active === false, { what: `${other} back as standby`, timeoutMs: 30_000 });
    expect(await activeMonitor(cluster)).toBe(active);

    const unknown = await cli(['chaos', 'kill', 'replica-9', '--data-dir', cluster.dataDir]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/no process named "replica-9" .*\(have: nats, replica-0, replica-1, replica-2, monitor-0, monitor-1, gateway\)/);

    const paused = await cli(['chaos', 'pause', active, '--data-dir', cluster.dataDir]);
    expect(paused.code).toBe(0);
    expect(paused.stdout).toContain(`chaos: ${active} (pid ${cluster.pid(active)}) paused with SIGSTOP`);
    await waitFor(async () => (await httpJson('GET', `${cluster.httpUrl(other)}/healthz`)).body?.active === true, { what: `${other} active after ${active} froze`, timeoutMs: 10_000 });

    expect((await cli(['chaos', 'resume', active, '--data-dir', cluster.dataDir])).code).toBe(0);
    await waitFor(async () => (await httpJson('GET', `${cluster.httpUrl(active)}/healthz`)).body?.active === false, { what: `${active} standby after resuming` });
    expect(await activeMonitor(cluster)).toBe(other);
  });
});

describe('nats-server restarts under the monitors', () => {
  let cluster: LocalCluster;

  beforeAll(async () => {
    ({ cluster } = await startLocalCluster({ replicas: 3, monitor: true }));
    await cluster.waitUntilReady();
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  test('each monitor is told its heartbeats were cut off and resumed (the time between counts as nobody\'s silence); the cluster takes writes again', async () => {
    expect((await execute(cluster, 'CREATE TABLE nr(k INTEGER PRIMARY KEY, v TEXT)')).status).toBe(200);
    const before = await steadyLeader(cluster);
    cluster.signal('nats', 'SIGKILL'); // the supervisor starts it again on the same port
    for (const m of MONITORS) {
      await waitFor(() => logLines(cluster, m).some((l) => l.msg === "heartbeats resumed: the time without them counts as nobody's silence" && Number(l.gapMs) > 0), {
        what: `${m} told of the gap`,
        timeoutMs: 30_000,
      });
    }
    const after = await steadyLeader(cluster);
    await waitFor(async () => (await execute(cluster, 'INSERT INTO nr(k, v) VALUES (1, ?)', ['after'], 'nr-1')).status === 200, { what: 'a write after the restart', timeoutMs: 30_000 });
    // eslint-disable-next-line no-console
    console.log(`nats-server restart: ${before} led before, ${after} after`);
  });
});

describe('planned switchover and a frozen leader, through the CLI', () => {
  let cluster: LocalCluster;
  let nc: NatsConnection;

  beforeAll(async () => {
    ({ cluster } = await startLocalCluster({ replicas: 3, monitor: true }));
    await cluster.waitUntilReady();
    nc = await natsClient(cluster.natsUrl);
  });

  afterAll(async () => {
    await nc?.close();
    await cluster?.stop();
  });

  test('flotilla switchover --to NODE hands the lease over (epoch + 1) under writes; the monitor does not step in', async () => {
    expect((await execute(cluster, 'CREATE TABLE sw(k INTEGER PRIMARY KEY, v TEXT)')).status).toBe(200);
    const leader = await steadyLeader(cluster);
    const monitor = await activeMonitor(cluster);
    const target = cluster.replicaNames.find((n) => n !== leader)!;
    const leaser = await openLease(nc);
    const before = await readLease(leaser);
    const load = startLoad(cluster.gatewayUrl, 'sw', { clients: 2, maxWrites: 1_000_000 });
    await waitFor(() => load.acked.length >= 100, { what: '100 writes before the switchover', timeoutMs: 30_000 });

    const out = await cli(['switchover', '--to', target, '--gateway', cluster.gatewayUrl]);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(new RegExp(`^switchover done: ${target} leads at epoch ${before.epoch + 1} \\(from ${leader}, handed over at lsn \\d+\\)`));
    expect(await readLease(leaser)).toMatchObject({ holder: target, epoch: before.epoch + 1 });

    const acked = load.acked.length;
    await waitFor(() => load.acked.length >= acked + 100, { what: '100 writes on the new leader', timeoutMs: 30_000 });
    await load.stop();
    await waitFor(async () => (await clusterView(cluster)).leader === target, { what: `${target} leading in /v1/cluster` });
    expect(logLines(cluster, monitor).filter((l) => l.msg === 'promoting')).toEqual([]);
    // Asking for the node that already leads is refused with the gateway's code.
    const again = await cli(['switchover', '--to', target, '--gateway', cluster.gatewayUrl]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(new RegExp(`^error: CONFLICT: ${target} already leads`));
  });

  test('flotilla chaos pause of the leader for longer than its lease: the monitor fails over; resumed, the old leader follows', async () => {
    const leader = await steadyLeader(cluster);
    const leaser = await openLease(nc);
    const before = await readLease(leaser);
    const pausedAt = performance.now();
    expect((await cli(['chaos', 'pause', leader, '--data-dir', cluster.dataDir])).code).toBe(0);
    const first = await firstWriteAfter(cluster, 'sw', before.epoch, pausedAt);
    const after = await readLease(leaser);
    expect(after).toMatchObject({ epoch: before.epoch + 1 });
    expect(after.holder).not.toBe(leader);
    // eslint-disable-next-line no-console
    console.log(`failover: SIGSTOP of ${leader} → first acknowledged write on ${after.holder} after ${Math.round(first.ms)} ms`);

    expect((await cli(['chaos', 'resume', leader, '--data-dir', cluster.dataDir])).code).toBe(0);
    await waitFor(async () => {
      const node = (await clusterView(cluster)).nodes.find((n) => n.name === leader);
      return node?.healthy && node.role === 'follower' ? node : null;
    }, { what: `${leader} following after it was resumed`, timeoutMs: 20_000 });
    const view = await clusterView(cluster);
    expect(view.leader).toBe(after.holder);
    expect(view.failover.lastFailover).toMatchObject({ from: leader, to: after.holder, epoch: after.epoch });
  });
});
