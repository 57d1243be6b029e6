#!/usr/bin/env node
import { readFileSync } from 'node:fs';

import { Command, InvalidArgumentError, Option } from 'commander';

import { DEFAULT_CONFIG_FILE, fileMode, logLevel, readConfig, resolveSettings } from './config.js';
import type { SettingsLayer } from './config.js';
import { Daemon } from './daemon.js';
import { LOG_LEVELS, stderrLog } from './log.js';

const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

/** Commander's argument parser from a config value parser, so flags and file reject the same values. */
const flag =
  <T>(parse: (value: string) => T) =>
  (value: string): T => {
    try {
      return parse(value);
    } catch (e) {
      throw new InvalidArgumentError((e as Error).message);
    }
  };

// No defaults here: an option left out falls back to the config file, then to config.ts's DEFAULTS.
const program = new Command('odysseyd')
  .description('Qubes Admin API daemon over a hypervisor abstraction layer')
  .version(version, '--version', 'print the version')
  .option('--config <file>', `config file, key = value lines (default ${DEFAULT_CONFIG_FILE}, if it exists)`)
  .option('--socket <path>', 'admin API socket (default /var/run/qubesd.sock)')
  .option('--state-dir <dir>', 'state directory (qubes.xml, VM files) (default /var/lib/qubes)')
  .option('--internal-socket <path>', 'internal API socket (system info for qrexec policy tools)')
  .option(
    '--backend <name>',
    'backend package name (kvm = @odyssey/backend-kvm) or module path (default kvm)',
  )
  .option('--libvirt-uri <uri>', "libvirt's URI for libvirt backends (default: the backend's)")
  .option(
    '--policy-dir <dir...>',
    'qrexec policy directories, first wins per file name (default /run/qubes/policy.d /etc/qubes/policy.d)',
  )
  .option(
    '--legacy-policy-dir <dir>',
    'Qubes 4.0 per-service policy files (for !compat-4.0) (default /etc/qubes-rpc/policy)',
  )
  .option(
    '--qrexec-services <dir>',
    "dom0's qrexec service directory; admin.* links to the socket are made there (default <state dir>/qrexec-services)",
  )
  .option('--backup-profile-dir <dir>', 'backup profiles, <id>.conf (default <state dir>/backup-profiles)')
  .option(
    '--dom0-services-dir <dir>',
    "flag files of dom0's service.* features, as upstream's /var/run/qubes-service",
  )
  .addOption(
    new Option('--log-level <level>', 'log level (default info)')
      .choices(LOG_LEVELS)
      .argParser(flag(logLevel)),
  )
  .option(
    '--strict-management',
    'management qubes may point their qubes only at qubes the policy lets them list',
  )
  .option('--socket-group <group>', "the admin socket's group, if it exists (default qubes)")
  .option('--socket-mode <mode>', "the admin socket's mode, octal (default 0660)", flag(fileMode))
  .parse();

const { config, policyDir, ...flags } = program.opts<
  Omit<SettingsLayer, 'policyDirs'> & { config?: string; policyDir?: string[]; strictManagement?: boolean }
>();
let log = stderrLog(flags.logLevel ?? 'info');

try {
  const settings = resolveSettings(await readConfig(config), {
    ...flags,
    ...(policyDir ? { policyDirs: policyDir } : {}),
  });
  log = stderrLog(settings.logLevel);
  // Libvirt backends take their URI from the environment; a flag beats an exported variable, which beats the file.
  const libvirtUri = flags.libvirtUri ?? process.env['ODYSSEY_LIBVIRT_URI'] ?? settings.libvirtUri;
  if (libvirtUri) process.env['ODYSSEY_LIBVIRT_URI'] = libvirtUri;
  const daemon = await Daemon.start({
    socketPath: settings.socket,
    internalSocketPath: settings.internalSocket ?? settings.socket.replace(/(\.sock)?$/, '.internal.sock'),
    stateDir: settings.stateDir,
    backend: settings.backend,
    policyDirs: settings.policyDirs,
    legacyPolicyDir: settings.legacyPolicyDir,
    ...(settings.qrexecServices ? { qrexecServiceDir: settings.qrexecServices } : {}),
    ...(settings.backupProfileDir ? { backupProfileDir: settings.backupProfileDir } : {}),
    ...(settings.dom0ServicesDir ? { dom0ServicesDir: settings.dom0ServicesDir } : {}),
    socketAccess: { group: settings.socketGroup, mode: settings.socketMode },
    strictManagement: flags.strictManagement === true,
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
