import { chmod, chown, readFile } from 'node:fs/promises';

import type { Log } from '../log.js';

/** Who may connect to the admin socket: upstream's qubesd.sock is root:qubes, mode 0660. */
export interface SocketAccess {
  readonly group: string;
  readonly mode: number;
}

/** The group's id from the group database file, or undefined when there is no such group. */
export async function groupId(name: string, groupFile = '/etc/group'): Promise<number | undefined> {
  const text = await readFile(groupFile, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const [group, , gid] = line.split(':');
    if (group === name && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  return undefined;
}

/** Gives the listening socket its group (when the group exists) and mode. */
export async function applySocketAccess(path: string, access: SocketAccess, log: Log): Promise<void> {
  const gid = await groupId(access.group);
  if (gid === undefined) log('debug', `no group ${access.group}: ${path} keeps its group`);
  else await chown(path, -1, gid);
  await chmod(path, access.mode);
}
