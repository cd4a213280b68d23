/**
 * The requester of a gateway that runs inside a replica (the replica's own REST API): a write goes
 * straight to this process's leader role when this node leads, with no NATS hop and no other
 * process on its path; everything else (and every write while another node leads) goes by NATS.
 * rqlite serves its API from every node the same way; behind a Service that selects the leader's
 * pod label it is CloudNativePG's `-rw` endpoint.
 */
import { RequestFailure, RequestFailureKind, Requester } from './requester';

/** This process's database node, as far as the API needs it. */
export interface LocalNode {
  /** Runs an encoded write request here when this node leads and resolves with the encoded reply; null when it does not lead. */
  localWrite(data: Uint8Array): Promise<Uint8Array> | null;
}

export class LocalFirstRequester implements Requester {
  constructor(
    private readonly remote: Requester,
    private readonly writeSubject: string,
    private readonly local: LocalNode,
  ) {}

  request(subject: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    const here = subject === this.writeSubject ? this.local.localWrite(data) : null;
    return here ? withTimeout(here, subject, timeoutMs) : this.remote.request(subject, data, timeoutMs);
  }
}

/** The leader answers every write it took (stopping answers NOT_LEADER); the bound is the contract's anyway. */
function withTimeout(reply: Promise<Uint8Array>, subject: string, timeoutMs: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new RequestFailure(RequestFailureKind.TIMEOUT, `no reply on ${subject} in time`)), timeoutMs);
    reply.then(
      (d) => {
        clearTimeout(timer);
        resolve(d);
      },
      (err: Error) => {
        clearTimeout(timer);
        reject(new RequestFailure(RequestFailureKind.OTHER, `local write failed: ${err.message}`, { cause: err }));
      },
    );
  });
}
