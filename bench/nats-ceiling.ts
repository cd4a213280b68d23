/**
 * The transport's ceiling for snapshot seeding: the same bytes moved between two bare processes by
 * NATS request/reply, in the snapshot's chunk size and window, with no file, no SQLite and no hash
 * on either side. Seeding cannot be faster than this over NATS on this machine.
 */
import { spawn } from 'node:child_process';
import { connect } from 'nats';

export interface NatsCeiling {
  bytes: number;
  chunkBytes: number;
  inFlight: number;
  ms: number;
  mbPerS: number;
}

const RESPONDER_SOURCE = `
const { connect } = require(process.env.NATS_MODULE);
(async () => {
  const nc = await connect({ servers: process.env.NATS_URL });
  const chunk = require('node:crypto').randomBytes(Number(process.env.CHUNK_BYTES));
  nc.subscribe(process.env.SUBJECT, { callback: (err, m) => { if (!err) m.respond(chunk); } });
  await nc.flush();
  process.stdout.write('ready\\n');
})();
`;

export async function measureNatsCeiling(natsUrl: string, bytes: number, chunkBytes: number, inFlight: number): Promise<NatsCeiling> {
  const subject = `bench.ceiling.${process.pid}`;
  const child = spawn(process.execPath, ['-e', RESPONDER_SOURCE], {
    env: { ...process.env, NATS_MODULE: require.resolve('nats'), NATS_URL: natsUrl, SUBJECT: subject, CHUNK_BYTES: String(chunkBytes) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const nc = await connect({ servers: natsUrl });
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`ceiling: responder exited with ${code}`)));
    });
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
