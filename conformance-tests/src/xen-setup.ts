import { copyFile, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { keyValues, script } from './repo-scripts.js';

/**
 * A Xen guest image already built (`build-guest-image.sh --flavour xen`'s output dir: vmlinuz,
 * initramfs, inputs). `--nested` sets it for the suite inside dom0, where the image cannot be
 * built (no esbuild toolchain checks, no ldd) but the host's copy is shared read-only.
 */
export const XEN_GUEST_IMAGE_ENV = 'ODYSSEY_XEN_GUEST_IMAGE';

/** Installs the project's Xen guest kernel + initramfs as the state dir's linux-kernel pool entry. */
export async function installXenGuestKernel(stateDir: string): Promise<void> {
  const prebuilt = process.env[XEN_GUEST_IMAGE_ENV];
  if (!prebuilt) {
    await script('build-guest-image.sh', [
      '--flavour',
      'xen',
      '--cache-dir',
      process.env['ODYSSEY_GUEST_CACHE'] ?? '/var/cache/odyssey/guest',
      '--install-kernel-dir',
      join(stateDir, 'vm-kernels'),
    ]);
    return;
  }
  const version = keyValues(await readFile(join(prebuilt, 'inputs'), 'utf8'))['kernel_version'];
  if (!version) throw new Error(`${prebuilt}/inputs names no kernel_version`);
  const dir = join(stateDir, 'vm-kernels', version);
  await mkdir(dir, { recursive: true });
  // Copies, not links: the share may go away before the state dir does.
  for (const file of ['vmlinuz', 'initramfs']) await copyFile(join(prebuilt, file), join(dir, file));
}
