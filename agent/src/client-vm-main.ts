#!/usr/bin/env node
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { Command } from 'commander';
import { QREXEC_AGENT_TRIGGER_PATH, QREXEC_EXIT_PROBLEM } from '@odyssey/qrexec';
import { runClientVm } from './client-vm.js';
import { createAgentTransport } from './transport.js';

const program = new Command()
  .name('qrexec-client-vm')
  .description("call a qrexec service in another domain; stdin and stdout are the service's")
  .argument('<target>', 'target qube or keyword (@default, @adminvm, @dispvm, …)')
  .argument('<service>', 'SERVICE[+ARG]')
  .option('-s, --source-qube <name>', 'ask to act as this source qube')
  .option('--domain-id <id>', "this domain's id (default $VCHAN_DOMAIN)", process.env['VCHAN_DOMAIN'])
  .option('--vchan-dir <dir>', 'directory of the vchan sockets (default $VCHAN_SOCKET_DIR or /var/run/vchan)')
  .option(
    '--vchan-proxy <path>',
    "open vchans through the agent's proxy socket (default $ODYSSEY_VCHAN_PROXY; KVM guests)",
    process.env['ODYSSEY_VCHAN_PROXY'],
  )
  .option(
    '--agent-socket <path>',
    "the agent's socket",
    process.env['QREXEC_AGENT_SOCKET'] ?? QREXEC_AGENT_TRIGGER_PATH,
  )
  .parse();

const [target, service] = program.processedArgs as [string, string];
const options = program.opts<{
  sourceQube?: string;
  domainId?: string;
  vchanDir?: string;
  vchanProxy?: string;
  agentSocket: string;
}>();
// Through the proxy the agent's transport knows this domain; socket names need its id.
const transport = options.vchanProxy
  ? createAgentTransport({ proxySocket: options.vchanProxy })
  : createAgentTransport({
      domainId: options.domainId || program.error('no domain id: pass --domain-id or set VCHAN_DOMAIN'),
      vchanDir: options.vchanDir,
    });

const exitCode = await runClientVm({
  transport,
  triggerPath: options.agentSocket,
  target,
  serviceAndArg: service,
  ...(options.sourceQube ? { source: options.sourceQube } : {}),
  stdin: process.stdin,
  stdout: process.stdout,
  stderr: process.stderr,
}).catch((error: unknown) => {
  process.stderr.write(`qrexec-client-vm: ${(error as Error).message}\n`);
  return QREXEC_EXIT_PROBLEM;
});
await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
// stdin may still be open (a terminal, a pipe nobody closes); the call is over regardless.
process.exit(exitCode);

async function flushed(stream: Writable): Promise<void> {
  if (stream.writableLength > 0 && !stream.destroyed)
    await once(stream, stream.writableEnded ? 'finish' : 'drain');
}
