import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanEnv } from './node-run.js';

const ODYSSEYD = fileURLToPath(new URL('../../../../core/dist/daemon/main.js', import.meta.url));
const CONNECTED = 'backend process connected';

export interface ProcessOdysseydPaths {
  /** The test's scratch directory: odysseyd's legacy policy dir goes under it unless named. */
  readonly root: string;
  readonly legacyPolicyDir?: string;
  readonly stateDir: string;
  readonly socket: string;
  readonly policyDir: string;
}

export interface ProcessOdysseyd {
  readonly child: ChildProcess;
  /** All odysseyd has written to stderr so far, for assertions on its log. */
  readonly log: () => string;
}

/**
 * The installed daemon's entry point on the process backend, as a user starts it (no config file),
 * resolved once its backend is connected; refused with its log when it exits first.
 */
export async function startProcessOdysseyd(paths: ProcessOdysseydPaths): Promise<ProcessOdysseyd> {
  const child = spawn(
    process.execPath,
    [
      ODYSSEYD,
      ...[
        '--config',
        '/dev/null',
        '--backend',
        'process',
        '--state-dir',
        paths.stateDir,
        '--socket',
        paths.socket,
      ],
      ...[
        '--policy-dir',
        paths.policyDir,
        '--legacy-policy-dir',
        paths.legacyPolicyDir ?? join(paths.root, 'legacy'),
      ],
    ],
    { env: cleanEnv(), stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  await new Promise<void>((resolve, reject) => {
    child.stderr?.on('data', (chunk: Buffer) => {
      log += chunk.toString();
      if (log.includes(CONNECTED)) resolve();
    });
    child.once('exit', (code, signal) =>
      reject(new Error(`odysseyd exited (${signal ?? code}) before "${CONNECTED}":\n${log}`)),
    );
  });
  return { child, log: () => log };
}
