#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

import { runCli } from './run.js';

/** The package's version, for --version; a bundled copy (the guest image's qvm) has no package.json to read. */
function packageVersion(): string | undefined {
  try {
    return (
      JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
    ).version;
  } catch {
    return undefined;
  }
}

const version = packageVersion();
process.exitCode = await runCli(
  process.argv.slice(2),
  { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env },
  // Installed, upstream's names (qvm-ls, qubes-prefs, ...) are links to this file: the name run is the subcommand.
  { invokedAs: basename(process.argv[1] ?? 'qvm'), ...(version === undefined ? {} : { version }) },
);
