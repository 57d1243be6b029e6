#!/usr/bin/env node
// The qrexec agent of a KVM guest (the busybox image bundles it, the Debian template runs it as a
// systemd service): the agent on the KVM vchan transport, owning the guest's one virtio-serial
// port. Prints ODYSSEY-QREXEC-READY on stdout once dom0 can reach it.
//
// --switch-user: run each call as the user dom0 names (the Debian template; the busybox image has
// root only).
// --vm-name: name the host after the qube (QubesDB /name) before serving calls, as upstream's
// qubes-early-vm-config does (the Debian template).
//
// Kernel command line options:
//   odyssey.vchan_echo=PORT   also serve a vchan echo server on PORT (diagnostics, throughput tests)
import { readFileSync } from 'node:fs';
import { KvmGuestTransport, serveVchanProxy } from '@odyssey/vchan';
import { QrexecAgent } from './agent.js';
import { DomainQubesDb } from './qubesdb-daemon.js';
import { nameFromQubesDb } from './vm-name.js';

/** Where the guest's qrexec-client-vm points ODYSSEY_VCHAN_PROXY. */
const VCHAN_PROXY_SOCKET = '/run/qubes/vchan-proxy';

const log = (message: string): void => void process.stderr.write(`odyssey-guest: ${message}\n`);
const cmdline = readFileSync('/proc/cmdline', 'utf8');
const echoPort = /(?:^|\s)odyssey\.vchan_echo=(\d+)/.exec(cmdline)?.[1];

const transport = await KvmGuestTransport.open({ log });
log(`vchan channel on ${transport.devicePath}`);

if (echoPort) {
  void (async () => {
    for (;;) {
      const vchan = await transport.listen('0', Number(echoPort));
      vchan.on('error', () => vchan.destroy());
      vchan.pipe(vchan);
      await new Promise((resolve) => vchan.once('close', resolve));
    }
  })();
}

// The virtio-serial port is the agent's alone: qrexec-client-vm opens its vchans through this socket.
await serveVchanProxy(transport, VCHAN_PROXY_SOCKET, log);

// The domain's QubesDB daemon (upstream's qubes-db.service): /run/qubes/qubesdb.sock for qubesdb-read.
const qubesDb = await DomainQubesDb.start({ transport, log });
if (process.argv.includes('--vm-name')) await nameFromQubesDb(qubesDb, log);
const agent = new QrexecAgent({ transport, log, switchUsers: process.argv.includes('--switch-user') });
await agent.start();
process.stdout.write('ODYSSEY-QREXEC-READY\n');
