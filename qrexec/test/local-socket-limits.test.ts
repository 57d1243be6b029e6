import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  LOCAL_SOCKET_LIMITS,
  MessageReader,
  MsgType,
  callLocalSocket,
  closeLocalSocket,
  encodeHeader,
  encodePeerInfo,
  listenLocalSocket,
  maxChunkPayload,
  type LocalCommandRunner,
  type LocalSocketLimits,
} from '../src/index.js';

let dir: string;
let server: Server | undefined;
const clients: Socket[] = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'odyssey-local-limits-'));
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  if (server) closeLocalSocket(server);
  server = undefined;
  await rm(dir, { recursive: true, force: true });
});

const CHUNK = maxChunkPayload(3);
const TOTAL = 8 * 1024 * 1024;

/** Lets the other side run for a few event-loop turns (a slow reader, not a timer). */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
}

function pattern(size: number): Buffer {
  const data = Buffer.alloc(size);
  for (let i = 0; i < size; i++) data[i] = (i * 7 + (i >> 11)) % 253;
  return data;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

interface Started {
  readonly path: string;
  readonly logs: string[];
  /** The server side of each connection, in order of arrival. */
  readonly sockets: Socket[];
}

async function start(run: LocalCommandRunner, limits: Partial<LocalSocketLimits> = {}): Promise<Started> {
  const path = join(dir, 'qrexec.work');
  const logs: string[] = [];
  server = await listenLocalSocket(path, run, (m) => logs.push(m), limits);
  const sockets: Socket[] = [];
  server.prependListener('connection', (s: Socket) => sockets.push(s));
  return { path, logs, sockets };
}

/** A raw client that has read the server's HELLO (so the server took the connection). */
async function greeted(path: string): Promise<{ socket: Socket; reader: MessageReader }> {
  const socket = connect(path);
  clients.push(socket);
  socket.on('error', () => undefined);
  const reader = new MessageReader(socket);
  const hello = await reader.expect();
  expect(hello.type).toBe(MsgType.HELLO);
  return { socket, reader };
}

function frame(type: number, payload: Buffer): Buffer {
  return Buffer.concat([encodeHeader(type, payload.length), payload]);
}

describe('local qrexec socket limits', () => {
  it('caller stdin a service does not read stays within the stream buffer in odysseyd, and arrives whole', async () => {
    const limit = LOCAL_SOCKET_LIMITS.streamBufferBytes;
    let held = 0;
    const received: Buffer[] = [];
    const started = await start(async (_cmd, { stdin }) => {
      const pass = stdin as PassThrough;
      for await (const chunk of stdin) {
        received.push(chunk as Buffer);
        // What odysseyd holds for the service: unread stdin, and bytes read from the socket but not parsed.
        const socketHeld = started.sockets[0]?.readableLength ?? 0;
        held = Math.max(held, pass.readableLength + pass.writableLength + socketHeld);
        await turns(20);
      }
      return 0;
    });
    const data = pattern(TOTAL);
    const sink = new PassThrough();
    sink.resume();
    const code = await callLocalSocket(started.path, 'DEFAULT:QUBESRPC test.Sink+ dom0', {
      stdin: Readable.from([data]),
      stdout: sink,
      stderr: new PassThrough().resume(),
    });
    expect(code).toBe(0);
    expect(sha(Buffer.concat(received))).toBe(sha(data));
    expect(held).toBeGreaterThan(0);
    // Worst case: each side of the PassThrough at its mark plus one chunk, and the socket's read
    // buffer (its mark raised to 128 KiB by a whole-message read, plus one 64 KiB read from the kernel).
    expect(held).toBeLessThanOrEqual(2 * (limit + CHUNK) + 128 * 1024 + 64 * 1024);
  });

  it('service output a caller does not read stays within the stream and socket buffers, and arrives whole', async () => {
    const limit = LOCAL_SOCKET_LIMITS.streamBufferBytes;
    let held = 0;
    const data = pattern(TOTAL);
    const started = await start(async (_cmd, { stdout }) => {
      const pass = stdout as PassThrough;
      for (let offset = 0; offset < data.length; offset += CHUNK) {
        // As the qrexec daemon does: write, and wait for drain when the buffer is full.
        if (!stdout.write(data.subarray(offset, offset + CHUNK))) await once(stdout, 'drain');
        const socketHeld = started.sockets[0]?.writableLength ?? 0;
        held = Math.max(held, pass.readableLength + pass.writableLength + socketHeld);
      }
      stdout.end();
      return 0;
    });
    const got: Buffer[] = [];
    const slow = new Writable({
      highWaterMark: 1024,
      write(chunk: Buffer, _enc, callback) {
        got.push(chunk);
        void turns(20).then(() => callback());
      },
    });
    const code = await callLocalSocket(started.path, 'DEFAULT:QUBESRPC test.Source+ dom0', {
      stdin: Readable.from([]),
      stdout: slow,
      stderr: new PassThrough().resume(),
    });
    expect(code).toBe(0);
    expect(sha(Buffer.concat(got))).toBe(sha(data));
    expect(held).toBeGreaterThan(0);
    // Worst case: each side of the PassThrough at its mark plus one chunk, and the socket's write
    // buffer at its 16 KiB mark plus the one message written past it.
    expect(held).toBeLessThanOrEqual(2 * (limit + CHUNK) + 16 * 1024 + CHUNK + 16);
  });

  it('refuses connections past maxConnections at once, and takes new ones when one ends', async () => {
    const started = await start(() => new Promise<number>(() => undefined), { maxConnections: 3 });
    const open = [await greeted(started.path), await greeted(started.path), await greeted(started.path)];
    const refused = connect(started.path);
    clients.push(refused);
    const bytes: Buffer[] = [];
    refused.on('data', (d: Buffer) => bytes.push(d));
    refused.on('error', () => undefined);
    await once(refused, 'close');
    expect(Buffer.concat(bytes)).toEqual(Buffer.alloc(0));
    expect(started.logs).toEqual(['local client refused: 3 connections already']);
    const closed = once(started.sockets[0] as Socket, 'close');
    open[0]?.socket.destroy();
    await closed;
    await greeted(started.path);
  });

  it('closes a connection that sends no request within the deadline; a call that did goes on past it', async () => {
    const requestTimeoutMs = 50;
    const started = await start(
      async (cmdline, { stdout }) => {
        // Outlive the deadline several times over before answering.
        await new Promise((resolve) => setTimeout(resolve, 4 * requestTimeoutMs));
        stdout.end(cmdline);
        return 3;
      },
      { requestTimeoutMs },
    );
    const idle = await greeted(started.path);
    await once(idle.socket, 'close');
    expect(started.logs).toEqual(['local client: no request within 0.05 s']);

    const out = new PassThrough();
    const text = new Promise<string>((resolve) => {
      let s = '';
      out.on('data', (d: Buffer) => (s += d.toString()));
      out.on('end', () => resolve(s));
    });
    const code = await callLocalSocket(started.path, 'DEFAULT:QUBESRPC test.Slow+ dom0', {
      stdin: Readable.from([]),
      stdout: out,
      stderr: new PassThrough().resume(),
    });
    out.end();
    expect(code).toBe(3);
    expect(await text).toBe('DEFAULT:QUBESRPC test.Slow+ dom0');
  });

  it('a message header announcing more than a qrexec message can hold is refused before its payload is read', async () => {
    const started = await start(() => Promise.resolve(0));
    const { socket } = await greeted(started.path);
    socket.write(frame(MsgType.HELLO, encodePeerInfo(3)));
    socket.write(encodeHeader(MsgType.EXEC_CMDLINE, 64 * 1024 * 1024));
    await once(socket, 'close');
    expect(started.logs).toEqual(['local client: message 0x200 too long (67108864)']);
  });
});
