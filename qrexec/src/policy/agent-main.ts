#!/usr/bin/env node
import { Command } from 'commander';
import { PolicyAgent } from './agent.js';
import { DEFAULT_POLICY_AGENT_SOCKET } from './ask.js';

const program = new Command('odyssey-policy-agent')
  .description("Answer qrexec policy 'ask' decisions on this terminal (upstream's policy.Ask)")
  .option(
    '--socket <path>',
    "where odysseyd asks (odysseyd: '<state dir>/run/policy-agent.sock')",
    DEFAULT_POLICY_AGENT_SOCKET,
  )
  .parse();
const { socket } = program.opts<{ socket: string }>();

const agent = new PolicyAgent({ socketPath: socket, input: process.stdin, output: process.stdout });
try {
  await agent.listen();
} catch (err) {
  process.stderr.write(`odyssey-policy-agent: cannot listen on ${socket}: ${(err as Error).message}\n`);
  process.exit(1);
}
process.stdout.write(`odyssey-policy-agent: answering on ${socket}; end input (Ctrl-D) to stop\n`);
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => agent.close());
await agent.done;
