/**
 * dom0's server, the domain's daemon and a local client, wired as in a real
 * domain: the socket vchan transport between dom0 (domain 0) and domain 7,
 * and the domain's local socket in a temporary directory.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import fc from 'fast-check';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SocketVchanTransport } from '@odyssey/vchan';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  Dom0QubesDbServer,
  encodeMessage,
  GuestQubesDb,
  HEADER_SIZE,
  LocalQubesDbServer,
  QdbMsg,
  QUBESDB_VCHAN_PORT,
  QubesDb,
  QubesDbClient,
  readOnlySocketPath,
} from '../src/index.js';

let dir: string;
let dom0Db: QubesDb;
let server: Dom0QubesDbServer;
let guest: GuestQubesDb;
let local: LocalQubesDbServer;
let client: QubesDbClient;

const dom0Transport = (): SocketVchanTransport => new SocketVchanTransport({ localDomain: '0', dir });
const guestTransport = (): SocketVchanTransport => new SocketVchanTransport({ localDomain: '7', dir });

/** Yields until `condition` holds; the test's timeout bounds it. */
async function waitFor(condition: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await condition())) await new Promise((resolve) => setTimeout(resolve, 10));
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qubesdb-'));
  dom0Db = new QubesDb();
  dom0Db.write('/name', 'work');
  dom0Db.write('/qubes-service/cups', '1');
  dom0Db.write('/qubes-vm-type', 'AppVM');
  server = new Dom0QubesDbServer({ transport: dom0Transport(), domain: '7', db: dom0Db });
  guest = new GuestQubesDb({ transport: guestTransport() });
  guest.start();
  await guest.ready;
  local = await LocalQubesDbServer.listen(join(dir, 'qubesdb.sock'), guest.db);
  client = await QubesDbClient.connect(local.path);
});

afterEach(async () => {
  client.close();
  await local.close();
  await guest.stop();
  await server.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('dom0 and the domain', () => {
  it('gives the domain the whole database at connection', async () => {
    expect((await client.read('/name'))?.toString()).toBe('work');
    expect(await client.list('/')).toEqual(['/name', '/qubes-service/cups', '/qubes-vm-type']);
    expect((await client.multiread('/qubes-')).map(([k, v]) => `${k}=${v.toString()}`)).toEqual([
      '/qubes-service/cups=1',
      '/qubes-vm-type=AppVM',
    ]);
    expect(await client.read('/missing')).toBeUndefined();
  });

  it("sends dom0's later writes and removals to the domain, and its watchers hear of them", async () => {
    await client.watch('/qubes-service/');
    await client.watch('/name');
    dom0Db.write('/qubes-service/ntpd', '0');
    expect(await client.watchEvent()).toBe('/qubes-service/ntpd');
    expect((await client.read('/qubes-service/ntpd'))?.toString()).toBe('0');
    dom0Db.rm('/qubes-service/');
    expect(await client.watchEvent()).toBe('/qubes-service/');
    expect(await client.list('/qubes-service/')).toEqual([]);
    expect(await client.unwatch('/qubes-service/')).toBe(true);
    expect(await client.unwatch('/qubes-service/')).toBe(false);
    dom0Db.write('/qubes-service/x', '1');
    dom0Db.write('/name', 'renamed');
    // The directory watch is gone: the next event is the key watch's.
    expect(await client.watchEvent()).toBe('/name');
  });

  it("sends the domain's own writes and removals to dom0", async () => {
    await client.write('/qubes-iptables-error', 'oops');
    await waitFor(() => dom0Db.has('/qubes-iptables-error'));
    expect(dom0Db.read('/qubes-iptables-error')?.toString()).toBe('oops');
    expect(await client.rm('/qubes-iptables-error')).toBe(true);
    expect(await client.rm('/qubes-iptables-error')).toBe(false);
    await waitFor(() => !dom0Db.has('/qubes-iptables-error'));
  });

  it('answers bad requests with an error and keeps the client', async () => {
    await expect(client.write('/dir/', 'x')).rejects.toThrow(/cannot write/);
    await expect(client.write('relative', 'x')).rejects.toThrow(/cannot write/);
    expect((await client.read('/name'))?.toString()).toBe('work');
  });

  it('refuses changes on a read-only socket', async () => {
    const ro = await LocalQubesDbServer.listen(readOnlySocketPath(local.path), guest.db, { readOnly: true });
    expect(ro.path).toBe(join(dir, 'qubesdb.ro.sock'));
    const reader = await QubesDbClient.connect(ro.path);
    try {
      expect((await reader.read('/name'))?.toString()).toBe('work');
      await expect(reader.write('/x', '1')).rejects.toThrow(/cannot write/);
      await expect(reader.rm('/name')).rejects.toThrow(/cannot remove/);
      expect(guest.db.read('/name')?.toString()).toBe('work');
    } finally {
      reader.close();
      await ro.close();
    }
  });

  it('drops a local client that sends a malformed header', async () => {
    const raw = connect(local.path);
    const bad = encodeMessage(QdbMsg.CmdRead, '/name');
    bad.writeUInt32LE(0xffffffff, 68);
    raw.end(bad);
    await new Promise((resolve) => raw.on('close', resolve));
    expect((await client.read('/name'))?.toString()).toBe('work');
  });

  it('drops a domain that breaks the protocol and serves the next connection', async () => {
    await guest.stop();
    const hostile = await guestTransport().connect('0', QUBESDB_VCHAN_PORT);
    const received: Buffer[] = [];
    hostile.on('data', (chunk: Buffer) => received.push(chunk));
    // A read is only valid on a local socket: on the vchan it ends the connection.
    hostile.write(encodeMessage(QdbMsg.CmdRead, '/name'));
    await new Promise((resolve) => hostile.on('close', resolve));
    expect(Buffer.concat(received).length).toBe(0);

    const again = await guestTransport().connect('0', QUBESDB_VCHAN_PORT);
    const replies: Buffer[] = [];
    again.on('data', (chunk: Buffer) => replies.push(chunk));
    again.write(encodeMessage(QdbMsg.CmdMultiread, ''));
    await waitFor(() => Buffer.concat(replies).length >= 4 * HEADER_SIZE);
    // Whole database in reverse order, then the end marker.
    const bytes = Buffer.concat(replies);
    expect(bytes.subarray(0, 1 + 14).toString('latin1')).toBe('\x0b/qubes-vm-type');
    expect(bytes.subarray(bytes.length - HEADER_SIZE)).toEqual(encodeMessage(QdbMsg.RespMultiread, ''));
    again.destroy();
  });

  it('survives hostile bytes from a domain: each connection ends or goes on, and the next one is served', async () => {
    await guest.stop();
    const message = fc
      .record({
        type: fc.integer({ min: 0, max: 15 }),
        path: fc.constantFrom('', '/name', '/x', '/qubes-service/', '/a-b.c:d@e'),
        data: fc.constantFrom('', 'v', 'x'.repeat(100)),
      })
      .map(({ type, path, data }) => {
        const frame = encodeMessage(QdbMsg.RespOk, path, data);
        frame[0] = type;
        return frame;
      });
    const bytes = fc.array(
      fc.oneof(
        message,
        fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
      ),
      {
        maxLength: 6,
      },
    );
    await fc.assert(
      fc.asyncProperty(bytes, async (parts) => {
        const hostile = await guestTransport().connect('0', QUBESDB_VCHAN_PORT);
        hostile.on('error', () => undefined);
        hostile.resume();
        hostile.end(Buffer.concat(parts));
        await new Promise((resolve) => hostile.on('close', resolve));
        expect(dom0Db.size).toBeLessThan(4096);
      }),
      { numRuns: 25 },
    );
    // dom0 still serves the domain's next daemon, with its own keys intact.
    const next = new GuestQubesDb({ transport: guestTransport() });
    next.start();
    await next.ready;
    expect(next.db.read('/qubes-vm-type')?.toString()).toBe('AppVM');
    await next.stop();
  });
});
