import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { SCRIPTS } from './programs.js';
import { cleanEnv, run } from './spawn.js';

/** `key=value` lines of the repository scripts' output. */
function keyValues(stdout: string): Record<string, string> {
  return Object.fromEntries(
    stdout
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}

async function script(name: string, args: string[]): Promise<Record<string, string>> {
  const done = await run(join(SCRIPTS, name), args, cleanEnv());
  if (done.code !== 0) throw new Error(`${name} ${args.join(' ')} failed: ${done.stderr}`);
  return keyValues(done.stdout);
}

/** A private libvirtd (scripts/libvirtd-test.sh), for CI hosts whose system libvirtd is not ours to use. */
export async function startPrivateLibvirtd(): Promise<{ env: NodeJS.ProcessEnv; stop: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'odyssey-conformance-libvirtd-'));
  const started = await script('libvirtd-test.sh', ['start', dir]);
  const socket = started['socket'];
  if (!socket) throw new Error('libvirtd-test.sh did not name its socket');
  return {
    env: { ODYSSEY_LIBVIRT_SOCKET: socket },
    stop: async () => {
      await script('libvirtd-test.sh', ['stop', dir]);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Installs the project's guest kernel + initramfs as the state dir's linux-kernel pool entry. */
export async function installGuestKernel(stateDir: string): Promise<void> {
  await script('build-guest-image.sh', [
    '--cache-dir',
    process.env['ODYSSEY_GUEST_CACHE'] ?? '/var/cache/odyssey/guest',
    '--install-kernel-dir',
    join(stateDir, 'vm-kernels'),
  ]);
}
