import { Readable } from 'node:stream';

import { runCli } from '../../src/cli/run.js';
import type { QubesdTarget } from './fake-qubesd.js';

export interface QvmResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface QvmOptions {
  stdin?: string | Buffer;
  env?: Record<string, string>;
  /** Pretend stderr is a terminal (`isTTY`, 80 columns), as progress output requires. */
  stderrTty?: boolean;
  /** The name the command is run as (default `qvm`), e.g. `qvm-prefs`. */
  invokedAs?: string;
}

/** Runs `qvm --socket <target> ...args` in-process and captures what it prints. */
export async function runQvm(
  target: { readonly socketPath: string },
  args: string[],
  options: QvmOptions = {},
): Promise<QvmResult> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(
    ['--socket', target.socketPath, ...args],
    {
      stdout: { write: (text: string) => (stdout += text) },
      stderr: {
        write: (text: string) => (stderr += text),
        ...(options.stderrTty ? { isTTY: true, columns: 80 } : {}),
      },
      stdin: Readable.from([options.stdin ?? '']),
      env: options.env ?? {},
    },
    options.invokedAs === undefined ? {} : { invokedAs: options.invokedAs },
  );
  return { code, stdout, stderr };
}

/** runQvm against the fake qubesd, with exactly the requests this run made to it. */
export async function runQvmRecorded(
  target: QubesdTarget,
  args: string[],
  options?: QvmOptions,
): Promise<QvmResult & { requests: string[] }> {
  const before = target.requests.length;
  const result = await runQvm(target, args, options);
  return { ...result, requests: target.requestStrings().slice(before) };
}
