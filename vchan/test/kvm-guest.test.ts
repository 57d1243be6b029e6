import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QrexecDaemon } from '@odyssey/qrexec';
import { KVM_VCHAN_PORT_NAME, KvmHostTransport } from '../src/kvm/index.js';

// The guest end for real: a QEMU/TCG guest of scripts/build-guest-image.sh (plain QEMU, no
// libvirt) whose agent serves qrexec over the KVM vchan transport on its virtio-serial port.
const run = promisify(execFile);
const BUILD_IMAGE = fileURLToPath(new URL('../../scripts/build-guest-image.sh', import.meta.url));
const ECHO_PORT = 9000;

function whyNoGuest(): string | undefined {
  if (!['/usr/bin/qemu-system-x86_64', '/usr/bin/lz4', '/usr/bin/cpio'].every((f) => existsSync(f))) {
    return 'needs qemu-system-x86, lz4 and cpio';
  }
  if (!readdirSync('/boot').some((f) => /^vmlinuz-.*-cloud-amd64$/.test(f)))
    return 'needs linux-image-cloud-amd64';
  if (process.getuid?.() !== 0 && !process.env['ODYSSEY_GUEST_CACHE'])
    return 'needs root or ODYSSEY_GUEST_CACHE';
  return undefined;
}
const skip = whyNoGuest();
if (skip) console.warn(`[kvm guest vchan tests] SKIPPED: ${skip}`);

let dir: string;
let qemu: ChildProcess;
let transport: KvmHostTransport;

describe.skipIf(skip)('KVM vchan with a real guest (QEMU/TCG, virtio-serial)', () => {
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kvm-guest-'));
    const cache = process.env['ODYSSEY_GUEST_CACHE'] ?? '/var/cache/odyssey/guest';
    const { stdout } = await run(BUILD_IMAGE, ['--cache-dir', cache], { timeout: 300_000 });
    const image = Object.fromEntries(stdout.split('\n').map((l) => l.split('=', 2)));
    const sock = join(dir, 'vchan.sock');
    const console = join(dir, 'console.log');
    qemu = spawn(
      'qemu-system-x86_64',
      [
        ...['-m', '512', '-display', 'none', '-monitor', 'none', '-no-reboot', '-serial', `file:${console}`],
        ...['-kernel', image['kernel'] as string, '-initrd', image['initramfs'] as string],
        ...['-append', `console=ttyS0 panic=-1 quiet odyssey.vchan_echo=${ECHO_PORT}`],
        ...['-device', 'virtio-serial-pci', '-chardev', `socket,id=ch0,path=${sock},server=on,wait=off`],
        ...['-device', `virtserialport,chardev=ch0,name=${KVM_VCHAN_PORT_NAME}`],
      ],
      { stdio: 'ignore' },
    );
    const deadline = Date.now() + 60_000;
    while (!(await readFile(console, 'utf8').catch(() => '')).includes('ODYSSEY-QREXEC-READY')) {
      if (Date.now() > deadline || qemu.exitCode !== null) throw new Error('guest did not become ready');
      await new Promise((r) => setTimeout(r, 50));
    }
    transport = new KvmHostTransport({ channelSocket: () => sock, connectTimeoutMs: 20_000 });
  }, 360_000);

  afterAll(async () => {
    transport?.close();
    if (qemu && qemu.exitCode === null) {
      qemu.kill('SIGKILL');
      await once(qemu, 'exit');
    }
    await rm(dir, { recursive: true, force: true });
  });

  it('serves qrexec: the daemon says HELLO to the guest agent and runs qubes.VMShell in it', async () => {
    const daemon = new QrexecDaemon({
      domain: { name: 'guest', id: 1 },
      transport,
      policy: async () => ({ result: 'deny' }),
      serviceDirs: [],
      log: (m) => console.log('qrexec-daemon:', m),
      connectTimeoutMs: 15_000,
    });
    await daemon.start();
    try {
      expect(daemon.protocolVersion).toBeGreaterThanOrEqual(2);
      const shell = await daemon.callService('qubes.VMShell', {
        stdin: Buffer.from('echo "hello from $(uname -r)"; echo oops >&2; exit 3\n'),
      });
      expect(shell.stdout.toString()).toMatch(/^hello from 6\.\d+.*cloud-amd64\n$/);
      expect(shell.stderr.toString()).toBe('oops\n');
      expect(shell.exitCode).toBe(3);
      // As qvm-run sends it: `COMMAND; exit` on the first line, the command's input after it. The
      // image's qubes.VMShell reads up to that line byte by byte and leaves the rest to `wc`.
      const size = 4 * 1024 * 1024;
      let dataStart = 0n;
      const stdin = Readable.from(
        (async function* () {
          dataStart = process.hrtime.bigint();
          yield Buffer.from('exec wc -c; exit\n');
          for (let off = 0; off < size; off += 65536) yield randomBytes(65536);
        })(),
      );
      const counted = await daemon.callService('qubes.VMShell', { stdin });
      const seconds = Number(process.hrtime.bigint() - dataStart) / 1e9;
      expect(counted.stdout.toString().trim()).toBe(String(size));
      console.log(
        `[kvm guest] qrexec stdin to qubes.VMShell (wc -c): 4 MiB in ${seconds.toFixed(2)} s = ${(4 / seconds).toFixed(1)} MB/s`,
      );
    } finally {
      await daemon.close();
    }
  }, 60_000);

  it('moves raw vchan bytes each way and says how fast', async () => {
    const vchan = await transport.connect('1', ECHO_PORT);
    const data = randomBytes(8 * 1024 * 1024);
    const t0 = process.hrtime.bigint();
    let received = 0;
    const chunks: Buffer[] = [];
    const done = new Promise<void>((resolve) =>
      vchan.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        received += chunk.length;
        if (received >= data.length) resolve();
      }),
    );
    for (let off = 0; off < data.length; off += 65536) {
      if (!vchan.write(data.subarray(off, off + 65536))) await once(vchan, 'drain');
    }
    await done;
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    expect(Buffer.concat(chunks).equals(data)).toBe(true);
    console.log(
      `[kvm guest] vchan echo: 8 MiB each way in ${seconds.toFixed(2)} s = ${(8 / seconds).toFixed(1)} MB/s per direction`,
    );
    vchan.end();
  }, 60_000);
});
