import { spawn } from 'node:child_process';

import { QubesDaemonAccessError } from './errors.js';
import type { Transport } from './transport.js';
import type { AdminCall } from './wire.js';

export const DEFAULT_QREXEC_CLIENT = 'qrexec-client-vm';

export interface QrexecTransportOptions {
  /** Program to run; defaults to `qrexec-client-vm` found on PATH. */
  command?: string;
}

/**
 * Calls from inside a qube: `qrexec-client-vm <dest> <method>+<arg>` with the payload on stdin. In dom0
 * the service is a socket service, so the remote end writes the same reply bytes as qubesd.sock does.
 */
export class QrexecTransport implements Transport {
  readonly command: string;

  constructor(options: QrexecTransportOptions = {}) {
    this.command = options.command ?? DEFAULT_QREXEC_CLIENT;
  }

  async call(call: AdminCall): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of this.stream(call)) chunks.push(chunk);
    return Buffer.concat(chunks);
  }

  async *stream(call: AdminCall, signal?: AbortSignal): AsyncIterable<Buffer> {
    // Like upstream's QubesRemote: no '+' at all when there is no argument.
    const service = call.arg === '' ? call.method : `${call.method}+${call.arg}`;
    const child = spawn(this.command, [call.dest, service], {
      stdio: ['pipe', 'pipe', 'pipe'],
      signal,
    });
    const stderr: Buffer[] = [];
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    const exited = new Promise<{ code: number | null; error?: Error }>((resolve) => {
      child.once('error', (error) => resolve({ code: null, error }));
      child.once('close', (code) => resolve({ code }));
    });
    // EPIPE when the service exits before reading its input is reported through the exit status instead.
    child.stdin.on('error', () => {});
    child.stdin.end(call.payload);
    let completed = false;
    try {
      for await (const chunk of child.stdout) yield chunk as Buffer;
      completed = true;
    } finally {
      if (!completed) child.kill();
    }
    const { code, error } = await exited;
    if (signal?.aborted) return;
    if (error) throw new QubesDaemonAccessError(`Service call error: ${error.message}`);
    if (code !== 0) {
      const detail = Buffer.concat(stderr).toString('utf8').trimEnd();
      throw new QubesDaemonAccessError(
        `Service call error: ${detail || `${this.command} exited with status ${code}`}`,
      );
    }
  }
}
