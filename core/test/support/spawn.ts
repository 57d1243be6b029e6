import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ODYSSEYD = fileURLToPath(new URL('../../dist/daemon/main.js', import.meta.url));

export interface SpawnedDaemon {
  readonly proc: ChildProcess;
  readonly socket: string;
  readonly stateDir: string;
  readonly stderr: () => string;
  readonly exited: Promise<number | null>;
}

/** Runs the built `odysseyd` as its own process (npm test builds it first). */
export async function spawnDaemon(
  args: string[] = [],
  stateDir?: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<SpawnedDaemon> {
  if (!existsSync(ODYSSEYD)) throw new Error(`${ODYSSEYD} is missing: run "npx tsc -b" (npm test does)`);
  const dir = stateDir ?? (await mkdtemp(join(tmpdir(), 'odyssey-proc-')));
  const socket = join(dir, 'qubesd.sock');
  const proc = spawn(process.execPath, [ODYSSEYD, '--socket', socket, '--state-dir', dir, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env,
  });
  let err = '';
  proc.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  for (let i = 0; i < 200 && !err.includes('serving '); i++) {
    if (proc.exitCode !== null) throw new Error(`odysseyd exited: ${err}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  if (!err.includes('serving ')) throw new Error(`odysseyd did not start: ${err}`);
  return { proc, socket, stateDir: dir, stderr: () => err, exited };
}
