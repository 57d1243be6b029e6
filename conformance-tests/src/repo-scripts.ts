import { join } from 'node:path';

import { SCRIPTS } from './programs.js';
import { cleanEnv, run } from './spawn.js';

/** `key=value` lines of the repository scripts' output. */
export function keyValues(stdout: string): Record<string, string> {
  return Object.fromEntries(
    stdout
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}

/** Runs scripts/NAME (extra environment `env`) to its end and returns its `key=value` output; fails with its stderr. */
export async function script(
  name: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<Record<string, string>> {
  const done = await run(join(SCRIPTS, name), args, { ...cleanEnv(), ...env });
  if (done.code !== 0) throw new Error(`${name} ${args.join(' ')} failed: ${done.stderr}`);
  return keyValues(done.stdout);
}
