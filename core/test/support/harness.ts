import 'reflect-metadata';

import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { container } from 'tsyringe';

import type { Clock } from '../../src/clock.js';
import { Daemon } from '../../src/daemon/daemon.js';
import { DAEMON_TOKENS } from '../../src/daemon/daemon-tokens.js';
import { TOKENS } from '../../src/tokens.js';
import type { VchanTransport, Vmm } from '@odyssey/hal';
import { FakeVmm } from './fake-vmm.js';

/** Sends raw bytes to a UNIX socket, half-closes, and returns everything the server sent back. */
export function rawCall(socketPath: string, request: Buffer | string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = connect(socketPath);
    s.on('connect', () => s.end(request));
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNRESET' || e.code === 'EPIPE') resolve(Buffer.concat(chunks));
      else reject(e);
    });
    s.on('close', () => resolve(Buffer.concat(chunks)));
  });
}

export function request(
  method: string,
  dest: string,
  arg = '',
  payload: Buffer | string = '',
  src = 'dom0',
): Buffer {
  return Buffer.concat([Buffer.from(`${method}+${arg} ${src} name ${dest}\0`), Buffer.from(payload)]);
}

export interface TestDaemon {
  readonly daemon: Daemon;
  readonly vmm: FakeVmm;
  readonly socket: string;
  readonly stateDir: string;
  /** What the daemon logged, `<level>: <message>` per entry. */
  readonly logs: string[];
  /** One call as the upstream dom0 client makes it; returns the raw reply. */
  call(method: string, dest: string, arg?: string, payload?: Buffer | string, src?: string): Promise<Buffer>;
  /** Like call, but expects OK and returns the body as text. */
  ok(method: string, dest: string, arg?: string, payload?: Buffer | string): Promise<string>;
  stop(): Promise<void>;
}

/**
 * Starts a daemon in this process with its state dir and Vmm (and vchan transport, clock when
 * given) registered in its container, in place of the ones it would make.
 */
export async function startDaemon(
  options: {
    stateDir?: string;
    vmm?: Vmm | string;
    vchan?: VchanTransport;
    clock?: Clock;
    dom0ServicesDir?: string;
  } = {},
): Promise<TestDaemon> {
  const stateDir = options.stateDir ?? (await mkdtemp(join(tmpdir(), 'odyssey-state-')));
  const socket = join(stateDir, 'qubesd.sock');
  const vmm = options.vmm ?? new FakeVmm();
  const logs: string[] = [];
  const given = container.createChildContainer();
  given.register(TOKENS.StateDir, { useValue: stateDir });
  if (typeof vmm !== 'string') {
    given.register(DAEMON_TOKENS.Backend, {
      useValue: { vmm, ...(options.vchan ? { vchan: options.vchan } : {}) },
    });
  }
  if (options.clock) given.register(TOKENS.Clock, { useValue: options.clock });
  const daemon = await Daemon.start({
    socketPath: socket,
    container: given,
    ...(typeof vmm === 'string' ? { backend: vmm } : {}),
    log: (level, message) => logs.push(`${level}: ${message}`),
    host: { memoryMiB: 16384, cpus: 4 },
    reconnectMs: 50,
    ...(options.dom0ServicesDir ? { dom0ServicesDir: options.dom0ServicesDir } : {}),
  });
  const call = (method: string, dest: string, arg = '', payload: Buffer | string = '', src = 'dom0') =>
    rawCall(socket, request(method, dest, arg, payload, src));
  return {
    daemon,
    vmm: vmm as FakeVmm,
    socket,
    stateDir,
    logs,
    call,
    ok: async (method, dest, arg = '', payload = '') => {
      const r = await call(method, dest, arg, payload);
      if (r[0] !== 0x30) throw new Error(`${method} failed: ${JSON.stringify(r.toString('latin1'))}`);
      return r.subarray(2).toString('utf8');
    },
    stop: async () => {
      await daemon.stop();
      if (!options.stateDir) await rm(stateDir, { recursive: true, force: true });
    },
  };
}

/** The wire form of an exception reply. */
export function exc(type: string, message: string): string {
  return `2\0${type}\0\0${message}\0`;
}
