// Entry point of the Xen guest image: the qrexec agent on the Xen vchan transport (libxenvchan
// through koffi), talking to dom0 (domid 0). Prints ODYSSEY-QREXEC-READY on stdout once dom0
// can reach it.
//
// Kernel command line options:
//   odyssey.vchan_echo=PORT   also serve a vchan echo server on PORT (diagnostics, throughput tests)
//
// The image needs, besides node and this bundle: node_modules/koffi and
// node_modules/@koromix/koffi-linux-x64 next to the bundle (koffi is kept out of it), the Xen
// libraries libxenvchan.so.4.17, libxenstore.so.4, libxengnttab.so.1, libxenevtchn.so.1,
// libxentoolcore.so.1 and libxentoollog.so.1, and /dev/xen (evtchn, gntalloc, gntdev, xenbus).
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { DomainQubesDb, QrexecAgent } from '../agent/src/index.js';
import { serveVchanProxy } from '../vchan/src/proxy/index.js';
import { XenVchanTransport } from '../vchan/src/xen/index.js';

/** Where the image's qrexec-client-vm wrapper points ODYSSEY_VCHAN_PROXY, as in the KVM image. */
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
        // Early in boot xenstore may not answer yet; the agent retries the same way.
        log(`vchan echo on port ${echoPort}: ${(error as Error).message}`);
        await sleep(1000);
      }
    }
  })();
}

// Other programs could open Xen vchans themselves, but the image's qrexec-client-vm is the same
// for KVM and Xen: it opens its vchans through the agent, over this socket.
await serveVchanProxy(transport, VCHAN_PROXY_SOCKET, log);

// The domain's QubesDB daemon (upstream's qubes-db.service): /run/qubes/qubesdb.sock for qubesdb-read.
await DomainQubesDb.start({ transport, log });
const agent = new QrexecAgent({ transport, log });
await agent.start();
process.stdout.write('ODYSSEY-QREXEC-READY\n');
