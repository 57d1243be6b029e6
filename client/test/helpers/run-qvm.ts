import { Readable } from 'node:stream';

import { runCli } from '../../src/cli/run.js';
import type { QubesdTarget } from './fake-qubesd.js';

export interface QvmResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface QvmOptions {
  stdin?: string;
  env?: Record<string, string>;
}

/** Runs `qvm --socket <target> ...args` in-process and captures what it prints. */
export async function runQvm(
  target: QubesdTarget,
  args: string[],
  options: QvmOptions = {},
): Promise<QvmResult> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(['--socket', target.socketPath, ...args], {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    stdin: Readable.from([options.stdin ?? '']),
    env: options.env ?? {},
  });
  return { code, stdout, stderr };
}
