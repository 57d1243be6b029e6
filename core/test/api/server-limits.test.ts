import 'reflect-metadata';

import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { join } from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { AdminServer } from '../../src/api/server.js';
import type { ServerLimits } from '../../src/api/server.js';
import { API_TOKENS } from '../../src/api/tokens.js';
import type { TestDaemon } from '../support/harness.js';
import { rawCall, request, startDaemon } from '../support/harness.js';

let d: TestDaemon;
let server: AdminServer;
let path: string;
let logs: string[];

beforeEach(async () => {
  d = await startDaemon();
  logs = [];
});
afterEach(async () => {
  await server.close();
  await d.stop();
});

/** Resolves once a log line containing `needle` was written. */
function logged(needle: string): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => {
      if (logs.some((l) => l.includes(needle))) resolve();
      else setImmediate(check);
    };
    check();
  });
}

/** A second admin socket on the daemon's own dispatcher, with limits small enough for a test. */
async function limitedServer(limits: ServerLimits): Promise<void> {
  server = new AdminServer(
    d.daemon.container.resolve(API_TOKENS.Dispatcher),
    (level, message) => logs.push(`${level}: ${message}`),
    limits,
  );
  path = join(d.stateDir, 'limited.sock');
  await server.listen(path);
}

/** Subscribes to admin.Events and resolves once connection-established arrived. */
function subscribe(): Promise<{ sock: Socket; received: () => number; closed: Promise<void> }> {
  return new Promise((resolve) => {
    let bytes = 0;
    const sock = connect(path);
    const closed = new Promise<void>((r) => sock.on('close', () => r()));
    sock.on('error', () => undefined);
    sock.on('connect', () => sock.end(request('admin.Events', 'dom0')));
    sock.on('data', (c: Buffer) => {
      if (bytes === 0) resolve({ sock, received: () => bytes, closed });
      bytes += c.length;
    });
  });
}

/** Connects and sends `bytes` without finishing the request; `closed` has what came back once the server closed. */
function partial(bytes: string): { sock: Socket; connected: Promise<void>; closed: Promise<Buffer> } {
  const chunks: Buffer[] = [];
  const sock = connect(path);
  sock.on('data', (c: Buffer) => chunks.push(c));
  sock.on('error', () => undefined);
  return {
    sock,
    connected: new Promise((r) => sock.on('connect', () => sock.write(bytes, () => r()))),
    closed: new Promise((r) => sock.on('close', () => r(Buffer.concat(chunks)))),
  };
}

const LIMIT = 256 * 1024;
const VALUE = 'x'.repeat(30_000);

describe('admin socket limits', () => {
  it('closes an admin.Events subscriber that stops reading, and only that one', async () => {
    await limitedServer({
      maxQueuedBytes: LIMIT,
      maxQueuedBytesTotal: 16 * LIMIT,
      maxPending: 16,
      requestTimeoutMs: 60_000,
    });
    const stuck = await subscribe();
    stuck.sock.pause();
    const reader = await subscribe();
    let maxQueued = 0;
    let calls = 0;
    // Each call fires a pre-set and a set event carrying the 30 kB value: about 60 kB per call.
    while (!logs.some((l) => l.includes('closed admin.Events of dom0')) && calls < 500) {
      await d.ok('admin.vm.feature.Set', 'dom0', `f${calls}`, VALUE);
      calls++;
      maxQueued = Math.max(maxQueued, server.load().queuedBytes);
    }
    expect(logs.filter((l) => l.includes('closed admin.Events of dom0'))).toHaveLength(1);
    // Well past the point of disconnection, the others go on.
    for (let i = 0; i < 20; i++) await d.ok('admin.vm.feature.Set', 'dom0', `g${i}`, VALUE);
    maxQueued = Math.max(maxQueued, server.load().queuedBytes);
    expect(maxQueued).toBeLessThanOrEqual(LIMIT);
    expect(server.load().connections).toBe(1);

    const answer = await rawCall(path, request('admin.vm.feature.Get', 'dom0', 'g19'));
    expect(answer.toString('latin1')).toBe(`0\0${VALUE}`);
    expect(reader.sock.destroyed).toBe(false);

    // What the stuck client finds when it reads at last: a cut stream, far shorter than the reader's.
    stuck.sock.resume();
    await stuck.closed;
    expect(stuck.received()).toBeLessThan(reader.received());
    expect(reader.received()).toBeGreaterThan((calls + 20) * 2 * VALUE.length);
    reader.sock.destroy();
    await reader.closed;
  });

  it('closes slow subscribers once their queues together pass the total limit', async () => {
    const total = LIMIT + LIMIT / 2;
    await limitedServer({
      maxQueuedBytes: LIMIT,
      maxQueuedBytesTotal: total,
      maxPending: 16,
      requestTimeoutMs: 60_000,
    });
    const stuck = await Promise.all([1, 2, 3, 4].map(() => subscribe()));
    for (const s of stuck) s.sock.pause();
    const closedLines = () => logs.filter((l) => l.includes('closed admin.Events of dom0'));
    let maxQueued = 0;
    for (let calls = 0; closedLines().length < 4 && calls < 500; calls++) {
      await d.ok('admin.vm.feature.Set', 'dom0', `f${calls}`, VALUE);
      maxQueued = Math.max(maxQueued, server.load().queuedBytes);
    }
    expect(closedLines()).toHaveLength(4);
    expect(closedLines().filter((l) => l.includes('event streams together left'))).not.toHaveLength(0);
    expect(maxQueued).toBeLessThanOrEqual(total);
    for (const s of stuck) s.sock.destroy();
  });

  it('drops a client that does not read its reply in time', async () => {
    await limitedServer({
      maxQueuedBytes: LIMIT,
      maxQueuedBytesTotal: 16 * LIMIT,
      maxPending: 16,
      requestTimeoutMs: 300,
    });
    // A reply far larger than what the kernel buffers for a socket: 20 tags of 60 kB.
    for (let i = 0; i < 20; i++) await d.ok('admin.vm.tag.Set', 'dom0', `${i}-${'t'.repeat(60_000)}`);
    const dropped = logged('its reply was not read in 300 ms');
    const sock = connect(path);
    sock.pause();
    sock.on('error', () => undefined);
    sock.end(request('admin.vm.tag.List', 'dom0'));
    await dropped;
    // The connection, and the reply it held, are gone once the socket has closed.
    await new Promise<void>((resolve) => {
      const check = (): void => (server.load().connections === 0 ? resolve() : void setImmediate(check));
      check();
    });
    sock.destroy();
    const answer = await rawCall(path, request('admin.vm.tag.List', 'dom0'));
    expect(answer.length).toBeGreaterThan(20 * 60_000);
  });

  it('drops a connection that does not finish its request in time', async () => {
    await limitedServer({
      maxQueuedBytes: LIMIT,
      maxQueuedBytesTotal: 16 * LIMIT,
      maxPending: 16,
      requestTimeoutMs: 200,
    });
    const half = partial('admin.vm.List dom0 na');
    const noEof = partial('admin.vm.List dom0 name dom0\0');
    expect((await half.closed).length).toBe(0);
    expect((await noEof.closed).length).toBe(0);
    expect(logs.filter((l) => l.includes('sent no whole request in 200 ms'))).toHaveLength(2);
    expect(server.load().pending).toBe(0);
    expect((await rawCall(path, request('admin.vm.List', 'dom0'))).toString('latin1')).toMatch(
      /^0\0dom0 class=AdminVM state=Running/,
    );
  });

  it('refuses connections past the pending limit, and takes them again once one finishes', async () => {
    await limitedServer({
      maxQueuedBytes: LIMIT,
      maxQueuedBytesTotal: 16 * LIMIT,
      maxPending: 3,
      requestTimeoutMs: 60_000,
    });
    const pending = [1, 2, 3].map(() => partial('admin.vm.List dom0'));
    await Promise.all(pending.map((p) => p.connected));
    expect((await rawCall(path, request('admin.vm.List', 'dom0'))).length).toBe(0);
    expect(
      logs.filter((l) => l.includes('refused a connection: 3 requests are still being sent')),
    ).toHaveLength(1);
    // The daemon's own socket is not affected.
    expect(await d.ok('admin.vm.List', 'dom0')).toMatch(/^dom0 class=AdminVM state=Running/);

    const [first, ...others] = pending as [ReturnType<typeof partial>, ...ReturnType<typeof partial>[]];
    first.sock.end(' name dom0\0');
    expect((await first.closed).toString('latin1')).toMatch(/^0\0dom0 class=AdminVM state=Running/);
    expect((await rawCall(path, request('admin.vm.List', 'dom0'))).toString('latin1')).toMatch(
      /^0\0dom0 class=AdminVM/,
    );
    expect(server.load().pending).toBe(2);
    for (const p of others) p.sock.destroy();
  });
});
