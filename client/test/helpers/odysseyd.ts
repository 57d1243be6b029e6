import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { AdminClient } from '../../src/admin-client.js';
import { SocketTransport } from '../../src/socket-transport.js';

const DAEMON = fileURLToPath(new URL('../../../core/dist/daemon/main.js', import.meta.url));

/**
 * A real odysseyd, run from its build output as a separate process (the client depends on no server
 * code, so it is never imported): `--backend process`, a fresh state directory, its own socket.
 */
export interface Odysseyd {
  readonly socketPath: string;
  readonly stateDir: string;
  readonly client: AdminClient;
  /** What the daemon wrote on stderr so far (for failure messages). */
  log(): string;
  stop(): Promise<void>;
}

export async function startOdysseyd(): Promise<Odysseyd> {
  if (!existsSync(DAEMON)) throw new Error(`${DAEMON} is missing: run \`npx tsc -b core\` first`);
  const dir = await mkdtemp(join(tmpdir(), 'odyssey-client-daemon-'));
  const socketPath = join(dir, 'qubesd.sock');
  const stateDir = join(dir, 'state');
  const child: ChildProcess = spawn(
    process.execPath,
    [
      DAEMON,
      '--config',
      '/dev/null',
      '--socket',
      socketPath,
      '--state-dir',
      stateDir,
      '--backend',
      'process',
      '--log-level',
      'error',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  child.stderr?.on('data', (chunk: Buffer) => (log += chunk.toString('utf8')));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const client = new AdminClient(new SocketTransport(socketPath));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await Promise.race([exited, sleep(5000).then(() => child.kill('SIGKILL'))]);
    await rm(dir, { recursive: true, force: true });
  };
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`odysseyd exited with status ${child.exitCode}: ${log}`);
    }
    try {
      await client.vms.list();
      break;
    } catch (err) {
      if (i >= 200) {
        await stop();
        throw new Error(`odysseyd did not answer on ${socketPath}: ${String(err)}\n${log}`);
      }
      await sleep(50);
    }
  }
  return { socketPath, stateDir, client, log: () => log, stop };
}
