import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
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
  /** Resolves once stderr holds `text` (the daemon logs it), rejects if the daemon exits first. */
  readonly logged: (text: string) => Promise<void>;
}

/**
 * Runs the built `odysseyd` as its own process (npm test builds it first), on the
 * process backend unless `args` names another and with no config file unless `args`
 * gives one, and resolves once it serves.
 */
export async function spawnDaemon(
  args: string[] = [],
  stateDir?: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<SpawnedDaemon> {
  if (!existsSync(ODYSSEYD)) throw new Error(`${ODYSSEYD} is missing: run "npx tsc -b" (npm test does)`);
  const dir = stateDir ?? (await mkdtemp(join(tmpdir(), 'odyssey-proc-')));
  const socket = join(dir, 'qubesd.sock');
  const proc = spawn(
    process.execPath,
    // An empty config file: the host's /etc/odyssey/odysseyd.conf must not reach a test daemon.
    [
      ODYSSEYD,
      '--config',
      '/dev/null',
      '--socket',
      socket,
      '--state-dir',
      dir,
      '--backend',
      'process',
      ...args,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], env },
  );
  let err = '';
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  // Waits on the daemon's own output and exit, never on a clock: a loaded machine only makes it slower.
  const logged = (text: string) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (!err.includes(text)) return false;
        proc.stderr?.off('data', check);
        resolve();
        return true;
      };
      if (check()) return;
      proc.stderr?.on('data', check);
      // 'close' comes after the last of stderr, so the text cannot arrive later.
      proc.once('close', (code) => {
        if (!check()) reject(new Error(`odysseyd exited (${code}) before logging "${text}": ${err}`));
      });
    });
  proc.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  await logged('serving ');
  return { proc, socket, stateDir: dir, stderr: () => err, exited, logged };
}

/**
 * Kills what is still running and removes the state dirs once every daemon has
 * exited: daemons may share a dir, and a live one still writes in it.
 */
export async function cleanUp(daemons: SpawnedDaemon[]): Promise<void> {
  for (const d of daemons) if (d.proc.exitCode === null && d.proc.signalCode === null) d.proc.kill('SIGKILL');
  await Promise.all(daemons.map((d) => d.exited));
  for (const dir of new Set(daemons.map((d) => d.stateDir))) await rm(dir, { recursive: true, force: true });
}
