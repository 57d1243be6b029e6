import { open } from 'node:fs/promises';
import { join } from 'node:path';

import { splitServiceAndArg } from '@odyssey/qrexec';

/** Where upstream's qrexec looks for a service's configuration (its QUBES_RPC_CONFIG_PATH), in order. */
export const RPC_CONFIG_DIRS: readonly string[] = [
  '/run/qubes/rpc-config',
  '/usr/local/etc/qubes/rpc-config',
  '/etc/qubes/rpc-config',
];

/** A configuration is a few lines: anything bigger is refused rather than read whole. */
const MAX_CONFIG_BYTES = 64 * 1024;
const NAME_MAX = 255;

/** A service configuration upstream's qrexec refuses; the call then fails. */
export class RpcConfigError extends Error {}

/**
 * The user a service's configuration forces (`force-user='root'`, as upstream's qubes.VMRootShell
 * and qubes.VMRootExec have: qvm-run calls them with no user), else undefined. The file is the first
 * of SERVICE+ARG, then SERVICE, found in `dirs`, as upstream's qrexec picks it. Its other keys
 * (wait-for-session, skip-service-descriptor, ...) are for features this agent does not have, so
 * only their line's shape is checked. Throws RpcConfigError for a file upstream refuses too.
 */
export async function forcedUser(
  dirs: readonly string[],
  serviceAndArg: string,
): Promise<string | undefined> {
  const { service, hasArgument } = splitServiceAndArg(serviceAndArg);
  for (const name of hasArgument ? [serviceAndArg, service] : [service]) {
    if (name.length > NAME_MAX || name.includes('/') || name.startsWith('.')) continue;
    for (const dir of dirs) {
      const text = await readConfig(join(dir, name));
      if (text !== undefined) return parseForceUser(text, join(dir, name));
    }
  }
  return undefined;
}

async function readConfig(path: string): Promise<string | undefined> {
  const file = await open(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
    throw new RpcConfigError(`${path}: ${err.message}`);
  });
  if (file === undefined) return undefined;
  try {
    const buffer = Buffer.alloc(MAX_CONFIG_BYTES + 1);
    const { bytesRead } = await file.read(buffer, 0, buffer.length, 0);
    if (bytesRead > MAX_CONFIG_BYTES)
      throw new RpcConfigError(`${path}: larger than ${MAX_CONFIG_BYTES} bytes`);
    return buffer.subarray(0, bytesRead).toString('latin1');
  } finally {
    await file.close();
  }
}

/**
 * Upstream's subset of TOML, one `key = value` a line: `#` comments and blank lines, no sections,
 * no leading whitespace; force-user's value a single-quoted string, given once.
 */
function parseForceUser(text: string, path: string): string | undefined {
  let user: string | undefined;
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  for (const [index, raw] of lines.entries()) {
    const where = `${path}:${index + 1}`;
    const line = raw.replace(/\r$/, '').replace(/[ \t]+$/, '');
    if (line === '' || line.startsWith('#')) continue;
    if (line.includes('\0')) throw new RpcConfigError(`${where}: NUL byte in line`);
    const match = /^([A-Za-z][A-Za-z0-9_-]*)[ \t]*=[ \t]*(.+)$/.exec(line);
    if (!match) throw new RpcConfigError(`${where}: not a 'key = value' line`);
    const [, key, value = ''] = match;
    if (key !== 'force-user') continue;
    if (user !== undefined) throw new RpcConfigError(`${where}: force-user given twice`);
    const quoted = /^'([^']*)'$/.exec(value);
    if (!quoted || quoted[1] === '')
      throw new RpcConfigError(`${where}: force-user must be a user name in single quotes`);
    user = quoted[1];
  }
  return user;
}
