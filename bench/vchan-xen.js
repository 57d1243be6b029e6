// bench:vchan-xen — runs inside a Xen dom0 (the nested one of `odyssey-conformance --backend xen
// --nested`, right after the suite): libxenvchan from dom0 to a PV guest (the guest agent's vchan
// echo server, odyssey.vchan_echo) against the socket transport between two processes of the same
// dom0, measured alternately (--repeats times each, medians reported) with the same payload. Prints
// one JSON line and writes it to --out.
//
//   node bench/vchan-xen.js --image DIR [--bytes N] [--rounds N] [--repeats N] [--ring BYTES] [--out FILE]
//
// --ring: the rings (both directions) the guest's echo server names, as qubesdb and the agent's
// control channel name theirs; default none, so the echo gets what a qrexec data channel gets
// (the transport's bulk rings: 1 MiB, or 64 KiB when gntalloc has no room). dom0's end reads the
// sizes off the channel. --ring 65536 measures upstream qrexec's rings.
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
    repeats: { type: 'string', default: '3' },
    ring: { type: 'string' },
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
  const repeats = Number(values.repeats);
  const ring = values.ring === undefined ? undefined : Number(values.ring);
  const measure = async (vchan) => {
    const roundTripUs = await measureRoundTrip(vchan, rounds);
    const { mbPerSecond } = await measureThroughput(vchan, vchan, bytes);
    return { mbPerSecond, roundTripUs };
  };
  const cleanups = [];
  try {
    const work = await mkdtemp(join(tmpdir(), 'vchan-bench-'));
    cleanups.push(() => rm(work, { recursive: true, force: true }));
    const config = join(work, 'guest.cfg');
    await writeFile(
      config,
      [
        `name = "${GUEST}"`,
        'type = "pv"',
        'memory = 512',
        `kernel = "${join(values.image, 'vmlinuz')}"`,
        `ramdisk = "${join(values.image, 'initramfs')}"`,
        `extra = "console=hvc0 panic=-1 odyssey.vchan_echo=${PORT}${ring ? ` odyssey.vchan_echo_ring=${ring}` : ''}"`,
        'on_poweroff = "destroy"',
        'on_reboot = "destroy"',
        'on_crash = "destroy"',
        '',
      ].join('\n'),
    );
    cleanups.push(() => run('xl', ['destroy', GUEST]).catch(() => undefined));
    await run('xl', ['create', config]);
    const domid = (await run('xl', ['domid', GUEST])).stdout.trim();
    const xen = await new XenVchanTransport().connect(domid, PORT, {
      timeoutMs: 180_000,
    });
    cleanups.push(() => xen.destroy());

    const dir = await mkdtemp(join(tmpdir(), 'vchan-bench-sock-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const echo = spawn(process.execPath, [new URL(import.meta.url).pathname, '--socket-echo', dir], {
      stdio: 'inherit',
    });
    cleanups.push(() => echo.kill());
    // The echo is a fresh node process: in a nested dom0 under TCG it takes longer to listen than
    // the transport's default connect timeout.
    const socket = await new SocketVchanTransport({ localDomain: '0', dir }).connect('1', PORT, {
      timeoutMs: 180_000,
    });
    cleanups.push(() => socket.destroy());

    // Alternated on the two open channels, so a slow spell of the nested machine falls on both,
    // after a short round each that warms up the JIT on both sides (the first run was the slowest).
    for (const vchan of [xen, socket]) {
      await measureRoundTrip(vchan, 20);
      await measureThroughput(vchan, vchan, 1 << 20);
    }
    const runs = { xen: [], socket: [] };
    for (let i = 0; i < repeats; i++) {
      runs.xen.push(await measure(xen));
      runs.socket.push(await measure(socket));
    }
    const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
    const xenMb = median(runs.xen.map((r) => r.mbPerSecond));
    const socketMb = median(runs.socket.map((r) => r.mbPerSecond));
    const result = {
      bytes,
      xen_vchan_mb_per_s: xenMb,
      xen_vchan_round_trip_us: median(runs.xen.map((r) => r.roundTripUs)),
      socket_vchan_mb_per_s: socketMb,
      socket_vchan_round_trip_us: median(runs.socket.map((r) => r.roundTripUs)),
      xen_to_socket_ratio: Math.round((xenMb / socketMb) * 1000) / 1000,
      xen_ring_bytes: xen.writableHighWaterMark,
      runs,
    };
    const line = `${JSON.stringify(result)}\n`;
    process.stdout.write(line);
    if (values.out) await writeFile(values.out, line);
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup();
  }
}
