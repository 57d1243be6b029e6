#!/usr/bin/env node
import { runQubesDbCmd } from './qubesdb-cmd.js';

// One program under every name, as upstream's qubesdb-cmd: the name after the last '-' is the command.
const code = await runQubesDbCmd(process.argv[1] ?? 'qubesdb-cmd', process.argv.slice(2), {
  stdout: (text) => void process.stdout.write(text),
  stderr: (text) => void process.stderr.write(text),
});
process.exitCode = code;
