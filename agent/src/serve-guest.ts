import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { VchanTransport } from '@odyssey/hal';
import { serveVchanProxy } from '@odyssey/vchan';
import { QrexecAgent } from './agent.js';
import { DomainQubesDb } from './qubesdb-daemon.js';
import { nameFromQubesDb } from './vm-name.js';

/** Where the guest's qrexec-client-vm points ODYSSEY_VCHAN_PROXY. */
const VCHAN_PROXY_SOCKET = '/run/qubes/vchan-proxy';
const DOM0 = '0';

/**
 * What a KVM or Xen guest runs once its vchan transport is open: a vchan echo server when the kernel
 * command line asks for one (`odyssey.vchan_echo=PORT`: diagnostics, throughput tests), the proxy
 * through which qrexec-client-vm opens its vchans (the transport is the agent's alone), the domain's
 * QubesDB daemon (upstream's qubes-db.service: /run/qubes/qubesdb.sock), and the qrexec agent.
 * Prints ODYSSEY-QREXEC-READY on stdout once dom0 can reach it.
 *
 * --switch-user: run each call as the user dom0 names (the Debian template; the busybox images have
 * root only).
 * --vm-name: name the host after the qube (QubesDB /name) before serving calls, as upstream's
 * qubes-early-vm-config does (the Debian template).
 */
export async function serveGuest(transport: VchanTransport, log: (message: string) => void): Promise<void> {
  const cmdline = readFileSync('/proc/cmdline', 'utf8');
  const echoPort = /(?:^|\s)odyssey\.vchan_echo=(\d+)/.exec(cmdline)?.[1];
  if (echoPort) void serveEcho(transport, Number(echoPort), log);
  await serveVchanProxy(transport, VCHAN_PROXY_SOCKET, log);
  const qubesDb = await DomainQubesDb.start({ transport, log });
  if (process.argv.includes('--vm-name')) await nameFromQubesDb(qubesDb, log);
  const agent = new QrexecAgent({ transport, log, switchUsers: process.argv.includes('--switch-user') });
  await agent.start();
  process.stdout.write('ODYSSEY-QREXEC-READY\n');
}

async function serveEcho(
  transport: VchanTransport,
  port: number,
  log: (message: string) => void,
): Promise<void> {
  for (;;) {
    try {
      const vchan = await transport.listen(DOM0, port);
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
