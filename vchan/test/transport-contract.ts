import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VchanError, type Vchan, type VchanTransport } from '@odyssey/hal';

/**
 * Two transports that reach each other: `listener` serves vchans for `clientDomain`,
 * `dialer` connects to `serverDomain`; `ring` is their default ring size (at least 64 KiB,
 * what qrexec asks for).
 */
export interface ContractFixture {
  readonly ring: number;
  readonly listener: VchanTransport;
  readonly clientDomain: string;
  readonly dialer: VchanTransport;
  readonly serverDomain: string;
  /** Runs after each case, once its vchans are destroyed (the Xen fake's recorded misuse). */
  readonly check?: () => void;
  readonly close: () => Promise<void>;
}

const RING = 64 * 1024;
const sha = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');
const tick = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 5));

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Resolves with the first `length` bytes the stream delivers. */
function readExactly(stream: Readable, length: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let seen = 0;
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      seen += chunk.length;
      if (seen < length) return;
      stream.off('data', onData);
      resolve(Buffer.concat(chunks));
    };
    stream.on('data', onData);
    stream.once('end', () => reject(new Error(`ended after ${seen} of ${length} bytes`)));
  });
}

/** Writes `data` in pieces of varying size (1 byte to 3 rings), honouring backpressure. */
async function writeAll(stream: Writable, data: Buffer, end = true): Promise<void> {
  const sizes = [1, 7, 4096, RING - 1, RING, 3 * RING, 100_000];
  for (let offset = 0, i = 0; offset < data.length; i++) {
    const size = sizes[i % sizes.length] as number;
    if (!stream.write(data.subarray(offset, offset + size))) await once(stream, 'drain');
    offset += size;
  }
  if (end) stream.end();
}

/**
 * The libvchan semantics every VchanTransport owes its callers (qrexec reference §3).
 */
export function vchanContract(name: string, setup: () => Promise<ContractFixture>): void {
  describe(`VchanTransport contract: ${name}`, () => {
    let f: ContractFixture;
    const open: Vchan[] = [];
    let nextPort = 600;

    beforeEach(async () => {
      f = await setup();
    });

    afterEach(async () => {
      for (const vchan of open.splice(0)) vchan.destroy();
      await tick();
      f.check?.();
      await f.close();
    });

    async function pair(): Promise<{ server: Vchan; client: Vchan }> {
      const port = nextPort++;
      const [server, client] = await Promise.all([
        f.listener.listen(f.clientDomain, port),
        f.dialer.connect(f.serverDomain, port),
      ]);
      open.push(server, client);
      return { server, client };
    }

    it('resolves listen when the client connects; both ends know their peer and port', async () => {
      const port = nextPort++;
      let listened = false;
      const listening = f.listener.listen(f.clientDomain, port).then((vchan) => {
        listened = true;
        return vchan;
      });
      await tick();
      expect(listened).toBe(false);
      const client = await f.dialer.connect(f.serverDomain, port);
      const server = await listening;
      open.push(server, client);
      expect([server.state(), client.state()]).toEqual(['connected', 'connected']);
      expect([server.remoteDomain, server.port]).toEqual([f.clientDomain, port]);
      expect([client.remoteDomain, client.port]).toEqual([f.serverDomain, port]);
    });

    it('lets a client connect before the server exists', async () => {
      const port = nextPort++;
      const connecting = f.dialer.connect(f.serverDomain, port, { timeoutMs: 5000 });
      await tick();
      const server = await f.listener.listen(f.clientDomain, port);
      const client = await connecting;
      open.push(server, client);
      expect(client.state()).toBe('connected');
    });

    it('takes one client per server; a second one times out with a VchanError', async () => {
      const port = nextPort++;
      const [server, client] = await Promise.all([
        f.listener.listen(f.clientDomain, port),
        f.dialer.connect(f.serverDomain, port),
      ]);
      open.push(server, client);
      await expect(f.dialer.connect(f.serverDomain, port, { timeoutMs: 100 })).rejects.toBeInstanceOf(
        VchanError,
      );
    });

    it('fails connect with a VchanError when no server appears in time', async () => {
      await expect(f.dialer.connect(f.serverDomain, nextPort++, { timeoutMs: 100 })).rejects.toBeInstanceOf(
        VchanError,
      );
    });

    it('moves bytes both ways', async () => {
      const { server, client } = await pair();
      client.write(Buffer.from('from the client'));
      expect(String((await once(server, 'data'))[0])).toBe('from the client');
      server.write(Buffer.from('from the server'));
      expect(String((await once(client, 'data'))[0])).toBe('from the server');
    });

    it('keeps order and every byte of large transfers in both directions at once', async () => {
      const { server, client } = await pair();
      const up = randomBytes(8 * 1024 * 1024 + 13);
      const down = randomBytes(6 * 1024 * 1024 + 7);
      const [atServer, atClient] = await Promise.all([
        readExactly(server, up.length),
        readExactly(client, down.length),
        writeAll(client, up, false),
        writeAll(server, down, false),
      ]);
      expect(atServer.length).toBe(up.length);
      expect(sha(atServer)).toBe(sha(up));
      expect(sha(atClient)).toBe(sha(down));
    }, 60_000);

    it('bounds buffering by the rings: bufferSpace reaches 0, dataReady stays small, resume delivers all', async () => {
      const { server, client } = await pair();
      expect(client.bufferSpace()).toBe(f.ring);
      server.pause();
      const chunk = Buffer.alloc(4096, 1);
      let accepted = 0;
      // Write what bufferSpace() allows (libvchan_buffer_space: what goes without blocking) until it
      // is 0 with data on the reader's side; that side runs as fast as load lets it.
      for (;;) {
        if (client.bufferSpace() > 0) {
          client.write(chunk);
          accepted += chunk.length;
          if (accepted > 64 * 1024 * 1024) throw new Error('no backpressure');
        } else if (server.dataReady() > 0) break;
        else await tick();
      }
      // The reader's stream, its ring and whatever a socket holds in between: a few rings, never unbounded.
      expect(server.dataReady()).toBeLessThanOrEqual(4 * f.ring);
      const received = readAll(server);
      client.end();
      expect((await received).length).toBe(accepted);
    });

    it('delivers what was written before end(), then EOF and disconnected on both ends', async () => {
      const { server, client } = await pair();
      server.end(Buffer.from('last words'));
      expect((await readAll(client)).toString()).toBe('last words');
      expect(client.state()).toBe('disconnected');
      expect(client.bufferSpace()).toBe(0);
      server.resume();
      if (!server.destroyed) await once(server, 'close');
      expect(server.state()).toBe('disconnected');
    });

    for (const dying of ['server', 'client'] as const) {
      it(`keeps a dead ${dying}'s last bytes for the reader, though the reader wrote after the death`, async () => {
        const ends = await pair();
        const [peer, reader] = dying === 'server' ? [ends.server, ends.client] : [ends.client, ends.server];
        peer.on('error', () => undefined);
        reader.on('error', () => undefined);
        // Read as qrexec's MessageReader and pipe() do, as bytes arrive: a failed write may end the stream.
        let received = '';
        reader.on('data', (chunk: Buffer) => (received += chunk.toString()));
        const closed = once(reader, 'close');
        // As when a disposable is killed right after its exit code: once the peer's last bytes are
        // written, its hard end (a killed process's), then in the same tick a write from the reader,
        // which finds the peer gone before the reader could read.
        peer.write(Buffer.from('exit code 0'), () => {
          peer.destroy(new Error('killed'));
          reader.write(Buffer.from('stdin eof'));
        });
        await closed;
        expect(received).toBe('exit code 0');
      });

      it(`keeps a dead ${dying}'s last bytes for a reader that reads only after its write found the death`, async () => {
        const ends = await pair();
        const [peer, reader] = dying === 'server' ? [ends.server, ends.client] : [ends.client, ends.server];
        peer.on('error', () => undefined);
        reader.on('error', () => undefined);
        const closed = new Promise((resolve) => reader.once('close', resolve));
        // As a pipe() whose destination is full: nothing is read while the write fails.
        const last = randomBytes(RING / 2);
        await new Promise<void>((resolve) => peer.write(last, () => resolve()));
        peer.destroy(new Error('killed'));
        while (reader.state() !== 'disconnected') await tick();
        let writeFailed: Error | null | undefined;
        reader.write(Buffer.from('stdin eof'), (error) => (writeFailed = error));
        for (let i = 0; i < 10; i++) await tick();
        const chunks: Buffer[] = [];
        reader.on('data', (chunk: Buffer) => chunks.push(chunk));
        await closed;
        expect(sha(Buffer.concat(chunks))).toBe(sha(last));
        // Then, with nothing left to read, the write fails as libvchan's does.
        expect(writeFailed).toBeInstanceOf(VchanError);
      });
    }

    it('ends the reader when the peer is destroyed', async () => {
      const { server, client } = await pair();
      client.resume();
      const ended = once(client, 'end');
      server.destroy();
      await ended;
      expect(client.state()).toBe('disconnected');
    });

    for (const closer of ['server', 'client'] as const) {
      it(`stops a writer busy on the other end when the ${closer} closes`, async () => {
        const ends = await pair();
        const [closing, writing] =
          closer === 'server' ? [ends.server, ends.client] : [ends.client, ends.server];
        closing.resume();
        writing.on('error', () => undefined);
        writing.resume();
        const closed = new Promise((resolve) => writing.once('close', resolve));
        const chunk = Buffer.alloc(RING, 7);
        let written = 0;
        const writer = (async () => {
          while (writing.writable && writing.state() === 'connected') {
            const drained = new Promise((resolve) => writing.once('drain', resolve));
            if (!writing.write(chunk)) await Promise.race([drained, closed]);
            written += chunk.length;
          }
        })();
        while (written < 4 * RING) await tick();
        closing.destroy();
        await writer;
        expect(writing.state()).toBe('disconnected');
        writing.destroy();
        await closed;
        const failed = await new Promise<Error | null | undefined>((resolve) => {
          if (writing.writable) writing.write(Buffer.from('x'), resolve);
          else resolve(new Error('not writable'));
        });
        expect(failed).toBeInstanceOf(Error);
      });
    }

    it('rejects a listen with a VchanError when its signal aborts before a client came', async () => {
      const port = nextPort++;
      const abort = new AbortController();
      const listening = f.listener.listen(f.clientDomain, port, { signal: abort.signal });
      await tick();
      abort.abort();
      await expect(listening).rejects.toBeInstanceOf(VchanError);
      const already = AbortSignal.abort();
      await expect(f.listener.listen(f.clientDomain, nextPort++, { signal: already })).rejects.toBeInstanceOf(
        VchanError,
      );
      // The aborted server is gone: nobody takes a client there.
      await expect(f.dialer.connect(f.serverDomain, port, { timeoutMs: 100 })).rejects.toBeInstanceOf(
        VchanError,
      );
    });

    it('ignores an abort once the client is connected', async () => {
      const port = nextPort++;
      const abort = new AbortController();
      const [server, client] = await Promise.all([
        f.listener.listen(f.clientDomain, port, { signal: abort.signal }),
        f.dialer.connect(f.serverDomain, port),
      ]);
      open.push(server, client);
      abort.abort();
      client.write(Buffer.from('still here'));
      expect(String((await once(server, 'data'))[0])).toBe('still here');
      expect(server.state()).toBe('connected');
    });
  });
}
