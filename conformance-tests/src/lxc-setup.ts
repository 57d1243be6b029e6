import { join } from 'node:path';

import { SCRIPTS } from './programs.js';
import { keyValues } from './repo-scripts.js';
import { cleanEnv, run } from './spawn.js';

/** What libvirtd-test.sh needs for libvirt's LXC driver on this kernel's cgroup layout. */
export const LXC_LIBVIRTD_ENV: NodeJS.ProcessEnv = { LIBVIRTD_TEST_LXC: '1' };

/**
 * odysseyd's environment for `--backend lxc`: libvirt's LXC URI and the domains' root tree, built
 * from the project's guest image by the backend's own script (cached).
 */
export async function lxcDaemonEnv(): Promise<NodeJS.ProcessEnv> {
  const build = join(SCRIPTS, '../backends/lxc/scripts/build-rootfs.sh');
  const done = await run(build, [], cleanEnv());
  const rootfs = keyValues(done.stdout)['rootfs'];
  if (done.code !== 0 || !rootfs) throw new Error(`build-rootfs.sh failed: ${done.stderr}`);
  return { ODYSSEY_LIBVIRT_URI: 'lxc:///system', ODYSSEY_LXC_ROOTFS: rootfs };
}
