import { lstat, mkdir, readdir, rm, symlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';

/**
 * Makes `dir` dom0's qrexec service directory for the Admin API: one symlink
 * per method name to the admin socket, as upstream links
 * /etc/qubes-rpc/admin.* to qubesd.sock, so a call from a domain reaches the
 * socket as a socket service. Methods whose service is a script
 * (admin.vm.Console: a socket link would hand the caller a dom0 pty path
 * instead of the console) get no link, and a stale link is removed so the
 * call fails instead of answering wrongly. Links from an older method table
 * are removed; anything else in the directory (an administrator's own
 * services, such as a console script, or a regular file replacing one admin
 * service) is left alone.
 */
export async function prepareAdminServices(
  dir: string,
  socketPath: string,
  methods: readonly { readonly name: string; readonly qrexecScript?: boolean }[],
): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const wanted = new Set(methods.filter((m) => !m.qrexecScript).map((m) => m.name));
  for (const entry of await readdir(dir)) {
    if (entry.startsWith('admin.') && !wanted.has(entry) && (await isSymlink(join(dir, entry))))
      await rm(join(dir, entry));
  }
  const target = resolve(socketPath);
  for (const name of wanted) {
    const path = join(dir, name);
    const existing = await lstat(path).catch(() => undefined);
    if (existing && !existing.isSymbolicLink()) continue;
    await rm(path, { force: true });
    await symlink(target, path);
  }
}

/**
 * Links dom0's qrexec service `name` to a socket service (upstream links
 * /etc/qubes-rpc/qubes.FeaturesRequest to qubesd.misc.sock); a regular file
 * an administrator put there instead is left alone.
 */
export async function prepareSocketService(dir: string, name: string, socketPath: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const path = join(dir, name);
  const existing = await lstat(path).catch(() => undefined);
  if (existing && !existing.isSymbolicLink()) return;
  await rm(path, { force: true });
  await symlink(resolve(socketPath), path);
}

async function isSymlink(path: string): Promise<boolean> {
  return (await lstat(path).catch(() => undefined))?.isSymbolicLink() ?? false;
}
