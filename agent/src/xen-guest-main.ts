#!/usr/bin/env node
// The qrexec agent of a Xen domU running the Debian template (systemd starts it in place of the
// KVM agent when odyssey-xen-generator finds Xen): the agent on the Xen vchan transport
// (libxenvchan through koffi), talking to dom0 (domid 0). Prints ODYSSEY-QREXEC-READY on stdout
// once dom0 can reach it. The busybox Xen image bundles the same program (scripts/guest-agent-xen.ts).
//
// --switch-user: run each call as the user dom0 names.
// --vm-name: name the host after the qube (QubesDB /name) before serving calls, as upstream's
// qubes-early-vm-config does.
//
// Kernel command line options:
//   odyssey.vchan_echo=PORT   also serve a vchan echo server on PORT (diagnostics, throughput tests)
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { XenVchanTransport, serveVchanProxy } from '@odyssey/vchan';
import { QrexecAgent } from './agent.js';
import { DomainQubesDb } from './qubesdb-daemon.js';
import { nameFromQubesDb } from './vm-name.js';

/** Where the guest's qrexec-client-vm points ODYSSEY_VCHAN_PROXY, as on KVM. */
const VCHAN_PROXY_SOCKET = '/run/qubes/vchan-proxy';
const DOM0 = '0';

const log = (message: string): void => void process.stderr.write(`odyssey-guest: ${message}\n`);
const cmdline = readFileSync('/proc/cmdline', 'utf8');
const echoPort = /(?:^|\s)odyssey\.vchan_echo=(\d+)/.exec(cmdline)?.[1];

const transport = new XenVchanTransport({ log });

if (echoPort) {
  void (async () => {
    for (;;) {
      try {
        const vchan = await transport.listen(DOM0, Number(echoPort));
        vchan.on('error', () => vchan.destroy());
        vchan.pipe(vchan);
        await new Promise((resolve) => vchan.once('close', resolve));
      } catch (error) {
        // Early in boot xenstore may not answer yet.
        log(`vchan echo on port ${echoPort}: ${(error as Error).message}`);
        await sleep(1000);
      }
    }
  })();
}

// Other programs could open Xen vchans themselves, but the template's qrexec-client-vm is the same
// on KVM and Xen: it opens its vchans through the agent, over this socket.
await serveVchanProxy(transport, VCHAN_PROXY_SOCKET, log);

// The domain's QubesDB daemon (upstream's qubes-db.service): /run/qubes/qubesdb.sock for qubesdb-read.
const qubesDb = await DomainQubesDb.start({ transport, log });
if (process.argv.includes('--vm-name')) await nameFromQubesDb(qubesDb, log);
const agent = new QrexecAgent({ transport, log, switchUsers: process.argv.includes('--switch-user') });
await agent.start();
process.stdout.write('ODYSSEY-QREXEC-READY\n');
