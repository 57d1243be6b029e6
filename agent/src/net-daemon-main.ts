#!/usr/bin/env node
// The guest's network daemon (odyssey-network.service): configures the qube's NICs from QubesDB and,
// in a qube that provides network, forwards, NATs and firewalls its clients with nftables.
import { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { QubesDbClient, QUBESDB_LOCAL_SOCKET } from '@odyssey/qubesdb';
import { openXenstore } from '@odyssey/vchan';
import { dhclient } from './net/links.js';
import { NetDaemon } from './net/net-daemon.js';
import { consoleLog } from './console-log.js';

const program = new Command('odyssey-network')
  .option('--qubesdb <path>', 'QubesDB socket (default $QUBESDB_SOCKET or /var/run/qubes/qubesdb.sock)')
  .option(
    '--resolv-conf <path>',
    'resolv.conf to write (a client) and forward DNS to (a netvm)',
    '/etc/resolv.conf',
  )
  .option(
    '--dhcp-client <command>',
    'DHCP client for an uplink, run with the interface name (default: dhclient)',
  )
  .parse();
const options = program.opts<{ qubesdb?: string; resolvConf: string; dhcpClient?: string }>();

const log = consoleLog('odyssey-network');
const socket = options.qubesdb ?? (process.env['QUBESDB_SOCKET'] || QUBESDB_LOCAL_SOCKET);

// The QubesDB daemon is the qrexec agent's: it may not listen yet when this starts.
let qdb: QubesDbClient | undefined;
for (let attempt = 0; !qdb; attempt++) {
  qdb = await QubesDbClient.connect(socket).catch((error: unknown) => {
    if (attempt % 300 === 0) log(`waiting for QubesDB at ${socket}: ${String(error)}`);
    return undefined;
  });
  if (!qdb) await new Promise((resolve) => setTimeout(resolve, 200));
}
const command = options.dhcpClient;
// A Xen domU: a netvm's client vifs are netback's, described in this domain's xenstore directory.
const onXen = (await readFile('/sys/hypervisor/type', 'utf8').catch(() => '')).trim() === 'xen';
const daemon = new NetDaemon({
  ...(onXen ? { xenstore: await openXenstore() } : {}),
  qdb,
  resolvConf: options.resolvConf,
  dhcpClient: command === undefined ? dhclient : (ifname) => [command, ifname],
  log,
});
await daemon.start();
log(daemon.isNetvm ? 'ready (provides network)' : 'ready');
process.stdout.write('ODYSSEY-NETWORK-READY\n');
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    daemon.stop();
    qdb.close();
  });
}
