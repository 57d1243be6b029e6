/**
 * vchan over a serial port in host-pipe mode, without VirtualBox: a pseudo-terminal stands in for
 * the guest's UART, bridged byte for byte to a connection to the domain's pipe, as VirtualBox in
 * client mode (what libvirt leaves it in) bridges them. dom0 listens at the pipe (PipeMeeting) and
 * its end is the KVM host transport dialling the socket the meeting opens; the guest's is the KVM
 * guest transport on the tty made raw: the same multiplexed framing as KVM.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Vchan } from '@odyssey/hal';
import { KvmHostTransport, type KvmGuestTransport } from '@odyssey/vchan';
import { PipeMeeting } from '../src/pipe-meeting.js';
import { openSerialGuestTransport } from '../src/serial-guest.js';
import { onPath } from '../../../libvirt/test/daemon.js';

/** The stand-in for VirtualBox: a pty (the guest's UART) bridged to a connection to the host pipe. */
const BRIDGE = `
import os, select, socket, sys, tty
master, slave = os.openpty()
tty.setraw(master)
conn = socket.socket(socket.AF_UNIX)
conn.connect(sys.argv[1])
print(os.ttyname(slave), flush=True)
try:
    while True:
        ready, _, _ = select.select([master, conn], [], [])
        if master in ready:
            data = os.read(master, 65536)
            if not data: break
            conn.sendall(data)
        if conn in ready:
            data = conn.recv(65536)
            if not data: break
            os.write(master, data)
except OSError:
    pass  # either end gone: the test is over
`;

const skip = ['python3', 'stty'].find((p) => !onPath(p));
if (skip) console.warn(`[virtualbox serial vchan] SKIPPED: ${skip} missing`);

let dir = '';
let bridge: ChildProcess | undefined;
let host: KvmHostTransport | undefined;
let meeting: PipeMeeting | undefined;
let guest: KvmGuestTransport | undefined;

beforeAll(async () => {
  if (skip) return;
  dir = await mkdtemp(join(tmpdir(), 'vbox-serial-'));
  meeting = await PipeMeeting.open(join(dir, 'vchan.pipe'), join(dir, 'vchan.sock'));
  bridge = spawn('python3', ['-c', BRIDGE, join(dir, 'vchan.pipe')], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: bridge.stdout as NodeJS.ReadableStream });
  const ttyPath = await new Promise<string>((resolve) => lines.once('line', resolve));
  guest = await openSerialGuestTransport(ttyPath);
  host = new KvmHostTransport({ channelSocket: () => join(dir, 'vchan.sock') });
});

afterAll(async () => {
  host?.close();
  const closing = guest?.close();
  bridge?.kill();
  await closing;
  await meeting?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The next `length` bytes `vchan` receives (the stream stays open). */
const readExactly = (vchan: Vchan, length: number): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      got += chunk.length;
      if (got < length) return;
      vchan.off('data', onData);
      vchan.pause();
      resolve(Buffer.concat(chunks));
    };
    vchan.on('data', onData);
    vchan.once('error', reject);
  });

it.skipIf(skip)('carries a vchan both ways, every byte value intact, over the raw tty', async () => {
  if (!guest || !host) throw new Error('the bridge did not start');
  const listening = guest.listen('0', 512);
  const fromDom0 = await host.connect('work', 512);
  const inGuest = await listening;
  // All 256 byte values, CR, LF, XON/XOFF and ^C among them: a cooked tty would change them.
  const payload = Buffer.concat([
    Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
    randomBytes(200_000),
  ]);
  fromDom0.write(payload);
  expect((await readExactly(inGuest, payload.length)).equals(payload)).toBe(true);
  const reply = randomBytes(70_000);
  inGuest.write(reply);
  expect((await readExactly(fromDom0, reply.length)).equals(reply)).toBe(true);
  fromDom0.destroy();
  inGuest.destroy();
});
