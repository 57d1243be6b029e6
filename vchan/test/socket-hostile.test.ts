import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VchanError } from '@odyssey/hal';
import { SocketVchanTransport, vchanSocketPath } from '../src/index.js';

/** dom0's socket transport in a directory a hostile domain ('3') also writes, as lxc's are. */
let dir: string;
let dom0: SocketVchanTransport;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vchan-hostile-'));
  dom0 = new SocketVchanTransport({ localDomain: '0', dir, connectTimeoutMs: 2000 });
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function serve(path: string, accepted: Socket[]): Promise<Server> {
  const server = createServer((socket) => accepted.push(socket));
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return server;
}

describe('socket vchan against a hostile domain', () => {
  it("connects to no other socket through a symlink the domain names as its server's", async () => {
    // Another domain's agent socket, which dom0 alone may reach as dom0.
    const other = join(dir, 'other');
    await mkdir(other);
    const reached: Socket[] = [];
    const victim = await serve(vchanSocketPath(other, '5', '0', 512), reached);
    try {
      await symlink(vchanSocketPath(other, '5', '0', 512), vchanSocketPath(dir, '3', '0', 512));
      const error = await dom0.connect('3', 512).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(VchanError);
      expect(((error as VchanError).cause as NodeJS.ErrnoException).code).toBe('ELOOP');
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(reached).toHaveLength(0);
    } finally {
      for (const socket of reached) socket.destroy();
      victim.close();
    }
  });

  it('attaches only the first of many connections at once; dom0 closes the others and the name', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uint8Array({ minLength: 1, maxLength: 64 }), { minLength: 2, maxLength: 12 }),
        async (payloads) => {
          const bound = await dom0.bind('3', 600);
          const path = vchanSocketPath(dir, '0', '3', 600);
          const received: Buffer[] = [];
          bound.vchan.on('data', (chunk: Buffer) => received.push(chunk));
          const ended = once(bound.vchan, 'end');
          // All connect before dom0 runs its accept: they wait together in the backlog.
          const clients = payloads.map((payload) => {
            const socket = createConnection(path);
            socket.on('error', () => undefined);
            socket.end(Buffer.from(payload));
            return socket;
          });
          const closed = clients.map(
            (socket) => new Promise<void>((resolve) => socket.once('close', () => resolve())),
          );
          await bound.connected;
          expect(existsSync(path)).toBe(false);
          await ended;
          bound.vchan.end();
          await Promise.all(closed);
          // The first connection's bytes, whole, and nothing of the others'.
          expect(Buffer.concat(received)).toEqual(Buffer.from(payloads[0] as Uint8Array));
          bound.vchan.destroy();
        },
      ),
      { numRuns: 15 },
    );
  });
});
