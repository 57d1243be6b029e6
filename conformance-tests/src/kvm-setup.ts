import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { script } from './repo-scripts.js';

/**
 * A private libvirtd (scripts/libvirtd-test.sh), for CI hosts whose system libvirtd is not ours to
 * use; `scriptEnv` is the script's own options (LIBVIRTD_TEST_LXC).
 */
export async function startPrivateLibvirtd(
  scriptEnv: NodeJS.ProcessEnv = {},
): Promise<{ env: NodeJS.ProcessEnv; stop: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'odyssey-conformance-libvirtd-'));
  const started = await script('libvirtd-test.sh', ['start', dir], scriptEnv);
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
