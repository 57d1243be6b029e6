#!/usr/bin/env node
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { runFeaturesRequest } from './features-request.js';

/** The call goes through qrexec-client-vm, as upstream's command runs it; no input, output discarded. */
async function commit(): Promise<number> {
  const child = spawn('qrexec-client-vm', ['dom0', 'qubes.FeaturesRequest'], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const [code] = (await once(child, 'exit')) as [number | null];
  return code ?? 1;
}

process.exitCode = await runFeaturesRequest(process.argv.slice(2), {
  stderr: (text) => void process.stderr.write(text),
  commit,
}).catch((error: unknown) => {
  process.stderr.write(`qvm-features-request: ${(error as Error).message}\n`);
  return 1;
});
