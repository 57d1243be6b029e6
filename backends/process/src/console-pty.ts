import { spawn, spawnSync } from 'node:child_process';
import { lstat, readFile, rm, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

import { processArgv } from './proc.js';

/** What a domain's console pty needs: its log (the domain's stdout and stderr), the pty's link, socat's pid file. */
export interface ConsoleFiles {
  readonly log: string;
  readonly link: string;
  readonly pidFile: string;
}

const LINK_POLL_MS = 10;
const LINK_TIMEOUT_MS = 5000;

/** Whether socat, which holds the ptys, is installed: without it the backend has no consoles. */
export function consolePtysAvailable(): boolean {
  return spawnSync('socat', ['-V'], { stdio: 'ignore' }).status === 0;
}

/**
 * A serial console for a process domain, as QEMU or xenconsoled give one: socat holds a pty's master
 * and writes what the domain prints (its console log, followed by `tail` as it grows) into it;
 * `files.link` points at the slave, which `qvm console` opens. Output only: a process domain reads no
 * console input. The pair runs detached in its own process group, like the domain, so the console
 * outlives a daemon restart with it; `tail --pid` ends it with the domain, whoever stops that.
 */
export async function openConsolePty(files: ConsoleFiles, domainPid: number): Promise<void> {
  const relay = spawn(
    'sh',
    [
      '-c',
      'tail -c +1 --pid="$1" -f -- "$2" | exec socat -u STDIN "PTY,link=$3,raw,echo=0"',
      'odyssey-console',
      String(domainPid),
      files.log,
      files.link,
    ],
    { detached: true, stdio: 'ignore' },
  );
  const pid = await new Promise<number>((resolve, reject) => {
    relay.once('error', reject);
    relay.once('spawn', () => resolve(relay.pid as number));
  });
  relay.unref();
  await writeFile(files.pidFile, `${pid}\n`);
  const deadline = Date.now() + LINK_TIMEOUT_MS;
  while (!(await isLink(files.link))) {
    if (relay.exitCode !== null || Date.now() > deadline) {
      await closeConsolePty(files);
      throw new Error(`socat did not make the console pty ${files.link}`);
    }
    await sleep(LINK_POLL_MS);
  }
}

/** Stops the console's relay (only if the recorded pid still relays to this link) and removes its files. */
export async function closeConsolePty(files: ConsoleFiles): Promise<void> {
  const pid = Number((await readFile(files.pidFile, 'utf8').catch(() => '')).trim());
  if (pid > 0 && (await processArgv(pid))?.includes(files.link)) {
    try {
      process.kill(-pid, 'SIGTERM');
    } catch {
      // Gone in the meantime.
    }
  }
  await rm(files.pidFile, { force: true });
  await rm(files.link, { force: true });
}

/** lstat, not a read: reading the pty would wait for console output. */
function isLink(path: string): Promise<boolean> {
  return lstat(path).then(
    (stats) => stats.isSymbolicLink(),
    () => false,
  );
}
