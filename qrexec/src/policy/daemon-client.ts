import { createConnection } from 'node:net';
import { parseSystemInfo, type SystemInfo } from './system-info.js';

export const QUBESD_INTERNAL_SOCKET = '/var/run/qubesd.internal.sock';

/** An error reply of the daemon (`2\0TYPE\0TRACEBACK\0MESSAGE\0`). */
export class DaemonCallError extends Error {
  constructor(
    readonly excType: string,
    readonly detail: string,
  ) {
    super(detail ? `${excType}: ${detail}` : excType);
    this.name = 'DaemonCallError';
  }
}

/**
 * One call on qubesd's internal socket, as dom0 makes it: header
 * `METHOD+ARG dom0 name DEST\0`, half-close, read the reply to EOF.
 * Resolves with the payload of an OK (`0\0…`) reply.
 */
export function callDaemon(socketPath: string, method: string, dest = 'dom0', arg = ''): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = createConnection(socketPath);
    sock.on('connect', () => sock.end(`${method}+${arg} dom0 name ${dest}\0`));
    sock.on('data', (chunk: Buffer) => chunks.push(chunk));
    sock.on('error', reject);
    sock.on('end', () => {
      const reply = Buffer.concat(chunks);
      if (reply.subarray(0, 2).equals(Buffer.from('0\0'))) return resolve(reply.subarray(2));
      if (reply.subarray(0, 2).equals(Buffer.from('2\0'))) {
        const [, excType = '', , message = ''] = reply.toString('utf8').split('\0');
        return reject(new DaemonCallError(excType, message));
      }
      reject(new Error(`invalid daemon reply: ${JSON.stringify(reply.subarray(0, 64).toString('latin1'))}`));
    });
  });
}

/** `internal.GetSystemInfo` from a running daemon. */
export async function fetchSystemInfo(socketPath: string = QUBESD_INTERNAL_SOCKET): Promise<SystemInfo> {
  const payload = await callDaemon(socketPath, 'internal.GetSystemInfo');
  return parseSystemInfo(JSON.parse(payload.toString('utf8')));
}
