#!/usr/bin/env node
import { basename } from 'node:path';

import { runCli } from './run.js';

// Installed, upstream's names (qvm-ls, qubes-prefs, ...) are links to this file: the name run is the subcommand.
process.exitCode = await runCli(
  process.argv.slice(2),
  {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
  },
  basename(process.argv[1] ?? 'qvm'),
);
