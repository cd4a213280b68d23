import * as net from 'node:net';

/**
 * A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it for a listener we closed).
 * Another process may still take it before the caller binds it: callers that spawn servers retry
 * on "address in use".
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error('freePort: listener has no TCP address'));
        return;
      }
      server.close(() => resolve(address.port));
    });
  });
}
