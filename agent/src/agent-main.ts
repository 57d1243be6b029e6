#!/usr/bin/env node
import { Command } from 'commander';
import { QREXEC_AGENT_TRIGGER_PATH, QREXEC_SERVICE_DIRS } from '@odyssey/qrexec';
import { QUBESDB_LOCAL_SOCKET } from '@odyssey/qubesdb';
import { serveVchanProxy } from '@odyssey/vchan';
import { QrexecAgent } from './agent.js';
import { DomainQubesDb } from './qubesdb-daemon.js';
import { createAgentTransport } from './transport.js';
import { nameFromQubesDb } from './vm-name.js';
import { consoleLog } from './console-log.js';
import { bindDirs } from './bind-dirs.js';
import { writeServiceFlags } from './service-flags.js';

const program = new Command()
  .name('odyssey-qrexec-agent')
  .description('qrexec agent of a domain: serves dom0 on vchan port 512 and qrexec-client-vm on its socket')
  .option('--domain-id <id>', "this domain's id (default $VCHAN_DOMAIN)", process.env['VCHAN_DOMAIN'])
  .option('--vchan-dir <dir>', 'directory of the vchan sockets (default $VCHAN_SOCKET_DIR or /var/run/vchan)')
  .option('--agent-socket <path>', 'socket qrexec-client-vm connects to', QREXEC_AGENT_TRIGGER_PATH)
  .option('--service-dir <dir...>', 'service directories, searched in order', [...QREXEC_SERVICE_DIRS])
  .option(
    '--qubesdb-socket <path>',
    "socket of the domain's QubesDB (default $QUBESDB_SOCKET or /var/run/qubes/qubesdb.sock)",
    process.env['QUBESDB_SOCKET'] || QUBESDB_LOCAL_SOCKET,
  )
  // The Debian template in a container (backends/lxc): its users, its hostname, and programs that
  // may not open the vchan dir (0700, the domain's root) reaching peers through the agent.
  .option('--switch-user', 'run each call as the user dom0 names (default: as the agent runs)')
  .option('--vm-name', 'name the host after the qube (QubesDB /name) before serving calls')
  .option(
    '--service-flags',
    "write upstream's qubes-sysinit flags (/run/qubes-service/*) before serving calls",
  )
  .option(
    '--bind-dirs',
    'bind the paths kept on the private volume (bind-dirs, custom-persist) before serving calls',
  )
  .option('--vchan-proxy <path>', "serve this domain's vchans to qrexec-client-vm on this socket")
  .parse();

const options = program.opts<{
  domainId?: string;
  vchanDir?: string;
  agentSocket: string;
  serviceDir: string[];
  qubesdbSocket: string;
  switchUser?: boolean;
  vmName?: boolean;
  serviceFlags?: boolean;
  bindDirs?: boolean;
  vchanProxy?: string;
}>();
const domainId = options.domainId || program.error('no domain id: pass --domain-id or set VCHAN_DOMAIN');

const transport = createAgentTransport({ domainId, vchanDir: options.vchanDir });
const log = consoleLog('qrexec-agent');
// The domain's QubesDB daemon, which upstream runs beside the agent (qubes-db.service).
const qubesdb = await DomainQubesDb.start({ transport, socketPath: options.qubesdbSocket, log });
if (options.vchanProxy) await serveVchanProxy(transport, options.vchanProxy, log);
if (options.vmName) await nameFromQubesDb(qubesdb, log);
if (options.serviceFlags) await writeServiceFlags(qubesdb, log);
if (options.bindDirs) await bindDirs(qubesdb, log);
const agent = new QrexecAgent({
  transport,
  serviceDirs: options.serviceDir,
  triggerPath: options.agentSocket,
  log,
  switchUsers: options.switchUser === true,
});
// Before the agent's socket exists: the process backend calls a domain started once it does, and
// may stop it at once; a SIGTERM with no handler yet ended the agent by the signal, a crash.
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    Promise.all([agent.stop(), qubesdb.stop()]).then(() => process.exit(0));
  });
}
await agent.start();
// The line every guest image prints on its console once dom0 can reach its agent: the end of its
// boot, which `qvm console` shows (a process domain's stdout is its console).
process.stdout.write('ODYSSEY-QREXEC-READY\n');
