/**
 * Upstream's tool names (qubes-core-admin-client's `qvm-*` and `qubes-prefs`), each the `qvm` subcommand
 * it stands for. Installed as links to the same entry point, so `qvm-prefs work memory` runs
 * `qvm prefs work memory`; a name whose subcommand `qvm` does not have yet says so instead.
 */
export const UPSTREAM_NAMES: Readonly<Record<string, string>> = {
  'qvm-ls': 'ls',
  'qvm-create': 'create',
  'qvm-remove': 'remove',
  'qvm-prefs': 'prefs',
  'qubes-prefs': 'global-prefs',
  'qvm-features': 'features',
  'qvm-service': 'service',
  'qvm-tags': 'tags',
  'qvm-firewall': 'firewall',
  'qvm-start': 'start',
  'qvm-shutdown': 'shutdown',
  'qvm-kill': 'kill',
  'qvm-pause': 'pause',
  'qvm-unpause': 'unpause',
  'qvm-check': 'check',
  'qvm-notes': 'notes',
  'qvm-volume': 'volume',
  'qvm-pool': 'pool',
  'qvm-run': 'run',
  'qvm-template': 'template',
  'qvm-device': 'device',
  'qvm-backup': 'backup',
};

/** The subcommand an invocation name stands for; `undefined` for `qvm` itself and any other name. */
export function subcommandFor(invokedAs: string): string | undefined {
  return Object.hasOwn(UPSTREAM_NAMES, invokedAs) ? UPSTREAM_NAMES[invokedAs] : undefined;
}
