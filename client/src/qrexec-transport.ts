import { spawn } from 'node:child_process';

import { QubesDaemonAccessError } from './errors.js';
import type { ByteSource, Transport, UploadOptions } from './transport.js';
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

  /**
   * The payload goes to the service's stdin as `source` yields it, paced by the pipe; that is how
   * upstream's remote client feeds `admin.vm.volume.Import` (a qrexec service in dom0).
   */
  async upload(call: AdminCall, source: ByteSource, options: UploadOptions = {}): Promise<Buffer> {
    const { signal, onProgress } = options;
    signal?.throwIfAborted();
    const child = spawn(this.command, [call.dest, serviceOf(call)], {
      stdio: ['pipe', 'pipe', 'pipe'],
      signal,
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    let exitedFlag = false;
    const exited = new Promise<{ code: number | null; error?: Error }>((resolve) => {
      child.once('error', (error) => resolve({ code: null, error }));
      child.once('close', (code) => resolve({ code }));
    });
    const stop = exited.then(() => {
      exitedFlag = true;
    });
    let stdinGone = false;
    child.stdin.on('error', () => {
      stdinGone = true;
    });
    child.stdin.once('close', () => {
      stdinGone = true;
    });
    try {
      if (call.payload.length > 0) child.stdin.write(call.payload);
      let sent = 0;
      for await (const chunk of source) {
        if (exitedFlag || stdinGone) break;
        const data = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
        if (data.length === 0) continue;
        if (!child.stdin.write(data)) {
          await Promise.race([new Promise<void>((r) => child.stdin.once('drain', () => r())), stop]);
        }
        sent += data.length;
        onProgress?.(sent);
      }
      if (!stdinGone) child.stdin.end();
    } catch (err) {
      child.kill();
      throw err;
    }
    const { code, error } = await exited;
    signal?.throwIfAborted();
    if (error) throw new QubesDaemonAccessError(`Service call error: ${error.message}`);
    if (code !== 0) {
      const detail = Buffer.concat(stderr).toString('utf8').trimEnd();
      throw new QubesDaemonAccessError(
        `Service call error: ${detail || `${this.command} exited with status ${code}`}`,
      );
    }
    return Buffer.concat(stdout);
  }

  async *stream(call: AdminCall, signal?: AbortSignal): AsyncIterable<Buffer> {
    const child = spawn(this.command, [call.dest, serviceOf(call)], {
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

/** Like upstream's QubesRemote: no '+' at all when there is no argument. */
function serviceOf(call: AdminCall): string {
  return call.arg === '' ? call.method : `${call.method}+${call.arg}`;
}
