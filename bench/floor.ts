/**
 * The per-message floor of this machine: CPU per message of a bare nats.js subscriber that only
 * echoes what it receives (no decoding, no SQLite), at about the rate of a 1-client write loop.
 * A follower at 1 client handles one log message and sends one ack per write, so this is the part
 * of its CPU per write that no change to Flotilla's code can remove (wake-ups, socket reads and
 * writes, the event loop); the rest is ours. nats-server's share for the same traffic is shown too.
 */
import { spawn } from 'node:child_process';
import { connect } from 'nats';
import { processCpuMs } from './cpu';
import { waitFor } from '@flotilla/testing';

export interface MessageFloor {
  messages: number;
  ratePerS: number;
  subscriberUsPerMessage: number;
  natsServerUsPerMessage: number;
}

const ECHO_SOURCE = `
const { connect } = require(process.env.NATS_MODULE);
(async () => {
  const nc = await connect({ servers: process.env.NATS_URL });
  nc.subscribe(process.env.SUBJECT_IN, { callback: (err, m) => { if (!err) nc.publish(process.env.SUBJECT_OUT, m.data); } });
  await nc.flush();
  process.stdout.write('ready\\n');
})();
`;

/** Echoes `messages` 200-byte messages published every millisecond; counts CPU of the echo process and of nats-server. */
export async function measureMessageFloor(natsUrl: string, natsServerPid: number, messages = 5000): Promise<MessageFloor> {
  const subjectIn = `bench.floor.${process.pid}.in`;
  const subjectOut = `bench.floor.${process.pid}.out`;
  const child = spawn(process.execPath, ['-e', ECHO_SOURCE], {
    env: { ...process.env, NATS_MODULE: require.resolve('nats'), NATS_URL: natsUrl, SUBJECT_IN: subjectIn, SUBJECT_OUT: subjectOut },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const nc = await connect({ servers: natsUrl });
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`floor: echo process exited with ${code}`)));
    });
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
