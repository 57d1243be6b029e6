#!/usr/bin/env node
import { Command, Option } from 'commander';

import { Daemon } from './daemon.js';
import { LOG_LEVELS, stderrLog } from './log.js';
import type { LogLevel } from './log.js';

const program = new Command('odysseyd')
  .description('Qubes Admin API daemon over a hypervisor abstraction layer')
  .option('--socket <path>', 'admin API socket', '/var/run/qubesd.sock')
  .option('--state-dir <dir>', 'state directory (qubes.xml, VM files)', '/var/lib/qubes')
  .option('--internal-socket <path>', 'internal API socket (system info for qrexec policy tools)')
  .option('--backend <name>', 'backend package name (kvm = @odyssey/backend-kvm) or module path', 'kvm')
  .option('--policy-dir <dir...>', 'qrexec policy directories, first wins per file name', [
    '/run/qubes/policy.d',
    '/etc/qubes/policy.d',
  ])
  .option(
    '--legacy-policy-dir <dir>',
    'Qubes 4.0 per-service policy files (for !compat-4.0)',
    '/etc/qubes-rpc/policy',
  )
  .option(
    '--qrexec-services <dir>',
    "dom0's qrexec service directory; admin.* links to the socket are made there (default <state dir>/qrexec-services)",
  )
  .option('--backup-profile-dir <dir>', 'backup profiles, <id>.conf (default <state dir>/backup-profiles)')
  .option(
    '--strict-management',
    'management qubes may point their qubes only at qubes the policy lets them list',
  )
  .addOption(new Option('--log-level <level>', 'log level').choices(LOG_LEVELS).default('info'))
  .parse();

const opts = program.opts<{
  socket: string;
  internalSocket?: string;
  stateDir: string;
  backend: string;
  policyDir: string[];
  legacyPolicyDir: string;
  qrexecServices?: string;
  backupProfileDir?: string;
  strictManagement?: boolean;
  logLevel: LogLevel;
}>();
const log = stderrLog(opts.logLevel);

try {
  const daemon = await Daemon.start({
    socketPath: opts.socket,
    internalSocketPath: opts.internalSocket ?? opts.socket.replace(/(\.sock)?$/, '.internal.sock'),
    stateDir: opts.stateDir,
    backend: opts.backend,
    policyDirs: opts.policyDir,
    legacyPolicyDir: opts.legacyPolicyDir,
    ...(opts.qrexecServices ? { qrexecServiceDir: opts.qrexecServices } : {}),
    ...(opts.backupProfileDir ? { backupProfileDir: opts.backupProfileDir } : {}),
    strictManagement: opts.strictManagement === true,
    log,
  });
  const shutdown = (signal: string) => {
    log('info', `${signal}: draining and saving`);
    daemon.stop().then(
      () => process.exit(0),
      (e: unknown) => {
        log('error', `shutdown failed: ${String(e)}`);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
} catch (e) {
  log('error', e instanceof Error ? e.message : String(e));
  process.exit(1);
}
