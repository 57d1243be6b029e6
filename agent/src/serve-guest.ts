import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { VchanTransport } from '@odyssey/hal';
import { serveVchanProxy } from '@odyssey/vchan';
import { QrexecAgent } from './agent.js';
import { DomainQubesDb } from './qubesdb-daemon.js';
import { nameFromQubesDb } from './vm-name.js';
import { bindDirs } from './bind-dirs.js';
import { writeServiceFlags } from './service-flags.js';

/** Where the guest's qrexec-client-vm points ODYSSEY_VCHAN_PROXY. */
const VCHAN_PROXY_SOCKET = '/run/qubes/vchan-proxy';
const DOM0 = '0';

/** Largest ring the echo server asks for: libxenvchan's largest, 256 grant pages a direction. */
const MAX_ECHO_RING = 1 << 20;

/**
 * The vchan echo the kernel command line asks for: `odyssey.vchan_echo=PORT`, and
 * `odyssey.vchan_echo_ring=BYTES` for rings of that size (up to 1 MiB) instead of what a qrexec
 * data channel gets (under Xen the transport's 1 MiB bulk rings when no other channel has them).
 */
export function echoRequest(cmdline: string): { port: number; ring?: number } | undefined {
  const port = /(?:^|\s)odyssey\.vchan_echo=(\d{1,5})(?=\s|$)/.exec(cmdline)?.[1];
  if (port === undefined || Number(port) > 65535) return undefined;
  const ring = /(?:^|\s)odyssey\.vchan_echo_ring=(\d{1,7})(?=\s|$)/.exec(cmdline)?.[1];
  const bytes = Number(ring);
  return ring !== undefined && bytes > 0 && bytes <= MAX_ECHO_RING
    ? { port: Number(port), ring: bytes }
    : { port: Number(port) };
}

/**
 * What a KVM or Xen guest runs once its vchan transport is open: a vchan echo server when the kernel
 * command line asks for one (echoRequest: diagnostics, throughput tests), the proxy
 * through which qrexec-client-vm opens its vchans (the transport is the agent's alone), the domain's
 * QubesDB daemon (upstream's qubes-db.service: /run/qubes/qubesdb.sock), and the qrexec agent.
 * Prints ODYSSEY-QREXEC-READY on stdout once dom0 can reach it.
 *
 * --switch-user: run each call as the user dom0 names (the Debian template; the busybox images have
 * root only).
 * --vm-name: name the host after the qube (QubesDB /name) before serving calls, as upstream's
 * qubes-early-vm-config does (the Debian template).
 * --service-flags: upstream's qubes-sysinit flags, /run/qubes-service/* and /run/qubes/this-is-*
 * (service-flags.ts), before serving calls (the Debian template).
 * --bind-dirs: bind the paths the private volume keeps (bind-dirs.ts) before serving calls (the
 * Debian template).
 */
export async function serveGuest(transport: VchanTransport, log: (message: string) => void): Promise<void> {
  const echo = echoRequest(readFileSync('/proc/cmdline', 'utf8'));
  if (echo) void serveEcho(transport, echo, log);
  await serveVchanProxy(transport, VCHAN_PROXY_SOCKET, log);
  const qubesDb = await DomainQubesDb.start({ transport, log });
  if (process.argv.includes('--vm-name')) await nameFromQubesDb(qubesDb, log);
  if (process.argv.includes('--service-flags')) await writeServiceFlags(qubesDb, log);
  if (process.argv.includes('--bind-dirs')) await bindDirs(qubesDb, log);
  const agent = new QrexecAgent({ transport, log, switchUsers: process.argv.includes('--switch-user') });
  await agent.start();
  process.stdout.write('ODYSSEY-QREXEC-READY\n');
}

async function serveEcho(
  transport: VchanTransport,
  { port, ring }: { port: number; ring?: number },
  log: (message: string) => void,
): Promise<void> {
  const rings = ring === undefined ? undefined : { readMin: ring, writeMin: ring };
  for (;;) {
    try {
      const vchan = await transport.listen(DOM0, port, rings);
      vchan.on('error', () => vchan.destroy());
      vchan.pipe(vchan);
      await new Promise((resolve) => vchan.once('close', resolve));
    } catch (error) {
      // Early in boot Xen's xenstore may not answer yet.
      log(`vchan echo on port ${port}: ${(error as Error).message}`);
      await sleep(1000);
    }
  }
}
