import { lstat, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { splitServiceAndArg } from './command.js';

export type ServiceEntry =
  /** An AF_UNIX socket (or a symlink to one): connect and speak bytes. */
  { readonly kind: 'socket'; readonly path: string } | { readonly kind: 'executable'; readonly path: string };

const NAME_MAX = 255;

/**
 * Finds a service as upstream does (reference §4.5 step 8): first
 * `SERVICE+ARG`, then `SERVICE`, each through all directories in order; the
 * first entry that exists wins, whatever it turns out to be.
 */
export async function findService(
  dirs: readonly string[],
  serviceAndArg: string,
): Promise<ServiceEntry | undefined> {
  const { service, hasArgument } = splitServiceAndArg(serviceAndArg);
  const names = hasArgument ? [serviceAndArg, service] : [service];
  for (const name of names) {
    if (name.length > NAME_MAX || name.includes('/')) continue;
    for (const dir of dirs) {
      const path = join(dir, name);
      if (!(await exists(path))) continue;
      const target = await stat(path).catch(() => undefined);
      return { kind: target?.isSocket() ? 'socket' : 'executable', path };
    }
  }
  return undefined;
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}
