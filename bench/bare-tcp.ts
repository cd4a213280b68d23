/**
 * The ceiling of any replica-to-replica transfer between two Node processes on this machine, with
 * no NATS in between: a child process reads the first `bytes` of a file and writes them to a
 * loopback TCP socket (1 MiB reads); this process writes what arrives to a new file in the same
 * directory, fdatasyncs it every 2 MiB as a seeding follower does, and fsyncs it at the end. No
 * SQLite, no hash, no protocol. A snapshot made by any design and streamed by a direct connection
 * (as pg_basebackup or LiteFS do) cannot be faster than this here.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { SNAPSHOT_FSYNC_EVERY_BYTES } from '@flotilla/replication';

export interface TcpCeiling {
  bytes: number;
  ms: number;
  mbPerS: number;
}

const SENDER_SOURCE = `
const fs = require('node:fs');
const net = require('node:net');
const server = net.createServer((socket) => {
  const stream = fs.createReadStream(process.env.FILE, { start: 0, end: Number(process.env.BYTES) - 1, highWaterMark: 1 << 20 });
  stream.pipe(socket);
});
server.listen(0, '127.0.0.1', () => process.stdout.write(String(server.address().port) + '\\n'));
`;

export async function measureTcpCeiling(file: string, bytes: number): Promise<TcpCeiling> {
  const child = spawn(process.execPath, ['-e', SENDER_SOURCE], { env: { ...process.env, FILE: file, BYTES: String(bytes) }, stdio: ['ignore', 'pipe', 'inherit'] });
  const dest = path.join(path.dirname(file), `tcp-bench-${process.pid}.bin`);
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout!.once('data', (d: Buffer) => resolve(Number(String(d).trim())));
      child.once('exit', (code) => reject(new Error(`tcp ceiling sender exited with ${code}`)));
    });
    const fd = fs.openSync(dest, 'w');
    try {
      const t0 = performance.now();
      let received = 0;
      let unflushed = 0;
      await new Promise<void>((resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1');
        socket.on('data', (chunk: Buffer) => {
          fs.writeSync(fd, chunk, 0, chunk.length, received);
          received += chunk.length;
          unflushed += chunk.length;
          if (unflushed >= SNAPSHOT_FSYNC_EVERY_BYTES) {
            fs.fdatasyncSync(fd);
            unflushed = 0;
          }
        });
        socket.on('end', resolve);
        socket.on('error', reject);
      });
      fs.fsyncSync(fd);
      const ms = performance.now() - t0;
      if (received !== bytes) throw new Error(`tcp ceiling: received ${received} of ${bytes} bytes`);
      return { bytes: received, ms: Math.round(ms), mbPerS: +(received / 1e6 / (ms / 1000)).toFixed(1) };
    } finally {
      fs.closeSync(fd);
    }
  } finally {
    child.kill('SIGKILL');
    fs.rmSync(dest, { force: true });
  }
}
