// bench:vchan-xen — runs inside a Xen dom0 (the nested one of `odyssey-conformance --backend xen
// --nested`, right after the suite): libxenvchan from dom0 to a PV guest (the guest agent's vchan
// echo server, odyssey.vchan_echo) against the socket transport between two processes of the same
// dom0, measured back to back with the same payload. Prints one JSON line and writes it to --out.
//
//   node bench/vchan-xen.js --image DIR [--bytes N] [--rounds N] [--out FILE]
//
// DIR is a Xen guest image (scripts/build-guest-image.sh --flavour xen: vmlinuz, initramfs).
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseArgs } from 'node:util';

import { ROOT } from './lib.js';

const { SocketVchanTransport, XenVchanTransport, measureRoundTrip, measureThroughput } = await import(
  join(ROOT, 'vchan/dist/index.js')
);

const PORT = 700;
const GUEST = 'odyssey-vchan-bench';
const run = promisify(execFile);

const { values } = parseArgs({
  options: {
    image: { type: 'string' },
    bytes: { type: 'string', default: String(16 << 20) },
    rounds: { type: 'string', default: '200' },
    out: { type: 'string' },
    'socket-echo': { type: 'string' },
  },
});

if (values['socket-echo']) {
  // The socket transport's far end: a second process, as a guest is a second domain.
  const vchan = await new SocketVchanTransport({ localDomain: '1', dir: values['socket-echo'] }).listen(
    '0',
    PORT,
  );
  vchan.pipe(vchan);
  vchan.once('close', () => process.exit(0));
} else {
  if (!values.image) throw new Error('--image DIR (a Xen guest image) is required');
  const bytes = Number(values.bytes);
  const rounds = Number(values.rounds);
  const measure = async (vchan) => {
    const roundTripUs = await measureRoundTrip(vchan, rounds);
    const { mbPerSecond } = await measureThroughput(vchan, vchan, bytes);
    vchan.destroy();
    return { mbPerSecond, roundTripUs };
  };

  const xen = await (async () => {
    const work = await mkdtemp(join(tmpdir(), 'vchan-bench-'));
    const config = join(work, 'guest.cfg');
    await writeFile(
      config,
      [
        `name = "${GUEST}"`,
        'type = "pv"',
        'memory = 512',
        `kernel = "${join(values.image, 'vmlinuz')}"`,
        `ramdisk = "${join(values.image, 'initramfs')}"`,
        `extra = "console=hvc0 panic=-1 odyssey.vchan_echo=${PORT}"`,
        'on_poweroff = "destroy"',
        'on_reboot = "destroy"',
        'on_crash = "destroy"',
        '',
      ].join('\n'),
    );
    try {
      await run('xl', ['create', config]);
      const domid = (await run('xl', ['domid', GUEST])).stdout.trim();
      const vchan = await new XenVchanTransport().connect(domid, PORT, { timeoutMs: 180_000 });
      return await measure(vchan);
    } finally {
      await run('xl', ['destroy', GUEST]).catch(() => undefined);
      await rm(work, { recursive: true, force: true });
    }
  })();

  const socket = await (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vchan-bench-sock-'));
    const echo = spawn(process.execPath, [new URL(import.meta.url).pathname, '--socket-echo', dir], {
      stdio: 'inherit',
    });
    try {
      // The echo is a fresh node process: in a nested dom0 under TCG it takes longer to listen than
      // the transport's default connect timeout.
      const vchan = await new SocketVchanTransport({ localDomain: '0', dir }).connect('1', PORT, {
        timeoutMs: 180_000,
      });
      return await measure(vchan);
    } finally {
      echo.kill();
      await rm(dir, { recursive: true, force: true });
    }
  })();

  const result = {
    bytes,
    xen_vchan_mb_per_s: xen.mbPerSecond,
    xen_vchan_round_trip_us: xen.roundTripUs,
    socket_vchan_mb_per_s: socket.mbPerSecond,
    socket_vchan_round_trip_us: socket.roundTripUs,
    xen_to_socket_ratio: Math.round((xen.mbPerSecond / socket.mbPerSecond) * 1000) / 1000,
  };
  const line = `${JSON.stringify(result)}\n`;
  process.stdout.write(line);
  if (values.out) await writeFile(values.out, line);
}
