#!/usr/bin/env node
import { join } from 'node:path';
import { Writable } from 'node:stream';

import { Command } from 'commander';

import {
  callLocalSocket,
  localSocketName,
  QREXEC_EXIT_PROBLEM,
  vmServiceCommand,
  withArgument,
} from '@odyssey/qrexec/local-client';

/**
 * dom0's `qrexec-client -d VM USER:QUBESRPC SERVICE+ARG dom0` (or `qvm-run --pass-io`)
 * for odysseyd: calls SERVICE in VM through odysseyd's local socket
 * `<socket dir>/qrexec.VM`. Our stdin goes to the service, its stdout and stderr
 * to ours, and we exit with its exit code.
 */
const program = new Command('odyssey-qrexec-client')
  .description("call a qrexec service in a running domain through odysseyd's local socket")
  .option('--socket-dir <dir>', "odysseyd's local qrexec sockets (<state dir>/run)", '/var/lib/qubes/run')
  .option('-u, --user <user>', 'user to run the service as', 'DEFAULT')
  .argument('<vm>', 'the domain')
  .argument('<service>', 'SERVICE[+ARG]')
  .parse();

const opts = program.opts<{ socketDir: string; user: string }>();
const [vm, service] = program.args as [string, string];

/** Our stdout/stderr as sinks the call may end without closing the process's streams. */
const sink = (target: NodeJS.WriteStream): Writable =>
  new Writable({
    write: (chunk: Buffer, _encoding, callback) => {
      target.write(chunk, (error) => callback(error ?? null));
    },
  });

let code: number;
try {
  code = await callLocalSocket(
    join(opts.socketDir, localSocketName(vm)),
    vmServiceCommand(opts.user, withArgument(service), 'dom0'),
    { stdin: process.stdin, stdout: sink(process.stdout), stderr: sink(process.stderr) },
  );
} catch (error) {
  process.stderr.write(`odyssey-qrexec-client: ${vm}: ${(error as Error).message}\n`);
  code = QREXEC_EXIT_PROBLEM;
}
// The service is done; stdin may still be open (a terminal), so exit once our output is flushed.
await new Promise<void>((resolve) => process.stdout.write('', () => resolve()));
await new Promise<void>((resolve) => process.stderr.write('', () => resolve()));
process.exit(code);
