/**
 * What NATS itself costs on this machine, measured with bare nats.js processes that do nothing but
 * move messages (no decoding, no SQLite, no file), on a cluster's own nats-server:
 *
 * - the **floor** per message: CPU of a process that only echoes each message it receives, fed one
 *   200-byte message per millisecond (about the rate of a 1-client write loop). A follower at 1
 *   client handles one log message and sends one ack per write, so this is the part of its CPU per
 *   write that no change to Flotilla's code can remove; nats-server's share is shown too.
 * - the **ceiling** for snapshot seeding: as many bytes as the snapshot moved by request/reply
 *   from a process that answers every request with the same chunk, in the snapshot's chunk size
 *   and window. Seeding over NATS cannot be faster than this.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { connect } from 'nats';
import { waitFor } from '@flotilla/testing';
import { processCpuMs } from './cpu';

export interface MessageFloor {
  messages: number;
  ratePerS: number;
  subscriberUsPerMessage: number;
  natsServerUsPerMessage: number;
}

export interface NatsCeiling {
  bytes: number;
  chunkBytes: number;
  inFlight: number;
  ms: number;
  mbPerS: number;
}

/** Runs `body` (JavaScript with `nc` connected to NATS_URL) in a child node process; resolves once it printed "ready". */
async function startBareProcess(what: string, body: string, env: Record<string, string>): Promise<ChildProcess> {
  const source = `
const { connect } = require(process.env.NATS_MODULE);
(async () => {
  const nc = await connect({ servers: process.env.NATS_URL });
  ${body}
  await nc.flush();
  process.stdout.write('ready\\n');
})();
`;
  const child = spawn(process.execPath, ['-e', source], { env: { ...process.env, NATS_MODULE: require.resolve('nats'), ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout!.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`${what}: process exited with ${code}`)));
    });
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return child;
}

/** Echoes `messages` 200-byte messages published every millisecond; counts CPU of the echo process and of nats-server. */
export async function measureMessageFloor(natsUrl: string, natsServerPid: number, messages = 5000): Promise<MessageFloor> {
  const subjectIn = `bench.floor.${process.pid}.in`;
  const subjectOut = `bench.floor.${process.pid}.out`;
  const child = await startBareProcess(
    'floor echo',
    'nc.subscribe(process.env.SUBJECT_IN, { callback: (err, m) => { if (!err) nc.publish(process.env.SUBJECT_OUT, m.data); } });',
    { NATS_URL: natsUrl, SUBJECT_IN: subjectIn, SUBJECT_OUT: subjectOut },
  );
  const nc = await connect({ servers: natsUrl });
  try {
    let echoed = 0;
    nc.subscribe(subjectOut, { callback: () => echoed++ });
    await nc.flush();
    const payload = new Uint8Array(200);
    const sub0 = processCpuMs(child.pid!);
    const nats0 = processCpuMs(natsServerPid);
    const t0 = performance.now();
    let sent = 0;
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        nc.publish(subjectIn, payload);
        if (++sent === messages) {
          clearInterval(timer);
          resolve();
        }
      }, 1);
    });
    await waitFor(() => echoed >= messages || undefined, { what: 'every floor message echoed', timeoutMs: 10_000, intervalMs: 10 });
    const seconds = (performance.now() - t0) / 1000;
    return {
      messages,
      ratePerS: Math.round(messages / seconds),
      subscriberUsPerMessage: Math.round(((processCpuMs(child.pid!) - sub0) * 1000) / messages),
      natsServerUsPerMessage: Math.round(((processCpuMs(natsServerPid) - nats0) * 1000) / messages),
    };
  } finally {
    child.kill('SIGKILL');
    await nc.close();
  }
}

/** Fetches `bytes` in `chunkBytes` replies with `inFlight` requests outstanding. */
export async function measureNatsCeiling(natsUrl: string, bytes: number, chunkBytes: number, inFlight: number): Promise<NatsCeiling> {
  const subject = `bench.ceiling.${process.pid}`;
  const child = await startBareProcess(
    'ceiling responder',
    "const chunk = require('node:crypto').randomBytes(Number(process.env.CHUNK_BYTES)); nc.subscribe(process.env.SUBJECT, { callback: (err, m) => { if (!err) m.respond(chunk); } });",
    { NATS_URL: natsUrl, SUBJECT: subject, CHUNK_BYTES: String(chunkBytes) },
  );
  const nc = await connect({ servers: natsUrl });
  try {
    const chunks = Math.ceil(bytes / chunkBytes);
    const t0 = performance.now();
    let next = 0;
    let received = 0;
    const worker = async () => {
      while (next < chunks) {
        next++;
        const m = await nc.request(subject, new Uint8Array(8), { timeout: 10_000 });
        received += m.data.length;
      }
    };
    await Promise.all(Array.from({ length: inFlight }, worker));
    const ms = performance.now() - t0;
    return { bytes: received, chunkBytes, inFlight, ms: Math.round(ms), mbPerS: +(received / 1e6 / (ms / 1000)).toFixed(1) };
  } finally {
    child.kill('SIGKILL');
    await nc.close();
  }
}
