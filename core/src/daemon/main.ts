#!/usr/bin/env node
import { Command, Option } from 'commander';

import { Daemon } from './daemon.js';
import { LOG_LEVELS, stderrLog } from './log.js';
import type { LogLevel } from './log.js';

const program = new Command('odysseyd')
  .description('Qubes Admin API daemon over a hypervisor abstraction layer')
  .option('--socket <path>', 'admin API socket', '/var/run/qubesd.sock')
  .option('--state-dir <dir>', 'state directory (qubes.xml, VM files)', '/var/lib/qubes')
  .option('--backend <name>', 'backend package name (kvm = @odyssey/backend-kvm) or module path', 'kvm')
  .addOption(new Option('--log-level <level>', 'log level').choices(LOG_LEVELS).default('info'))
  .parse();

const opts = program.opts<{ socket: string; stateDir: string; backend: string; logLevel: LogLevel }>();
const log = stderrLog(opts.logLevel);

try {
  const daemon = await Daemon.start({ socketPath: opts.socket, stateDir: opts.stateDir, backend: opts.backend, log });
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
