import { stat } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Whether a container's root tree boots systemd: it holds systemd's binary where the Debian
 * template's `/sbin/odyssey-lxc-init` execs it (the busybox root tree of scripts/build-rootfs.sh has
 * none). Only the root's owner chooses what it holds, and what the answer grants (the capabilities
 * systemd needs, inside the domain's own user namespace; shutdown through /run/initctl) is the
 * domain's alone, so a plain stat is enough.
 */
export async function rootBootsSystemd(tree: string): Promise<boolean> {
  return (await stat(join(tree, 'usr/lib/systemd/systemd')).catch(() => undefined))?.isFile() ?? false;
}
