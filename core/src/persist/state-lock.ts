import { closeSync, openSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';

import koffi from 'koffi';

/**
 * One daemon per state dir, as upstream's qubesd holds a lock on qubes.xml: an
 * exclusive flock(2) on `<state dir>/odysseyd.lock`, held by an open file
 * descriptor for the daemon's life. The kernel drops it when the process dies,
 * however it dies, so a supervisor can restart the daemon at once after a
 * SIGKILL, while a second live daemon is refused.
 */
export class StateDirLockedError extends Error {
  constructor(dir: string) {
    super(`state dir ${dir} is in use by another odysseyd`);
    this.name = 'StateDirLockedError';
  }
}

export const LOCK_FILE = 'odysseyd.lock';

const LOCK_EX = 2;
const LOCK_NB = 4;

type Flock = (fd: number, operation: number) => number;
let flock: Flock | undefined;

function bindFlock(): Flock {
  flock ??= koffi.load('libc.so.6').func('int flock(int fd, int operation)') as Flock;
  return flock;
}

/** Opens the lock file; a directory there is the mkdir lock of earlier versions, and holds nothing. */
function openLockFile(path: string): number {
  try {
    // libuv opens with O_CLOEXEC: domains the daemon spawns never inherit the lock.
    return openSync(path, 'a', 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EISDIR') throw e;
    rmdirSync(path);
    return openSync(path, 'a', 0o600);
  }
}

/** Takes the state dir's lock or throws StateDirLockedError; the returned function releases it. */
export function lockStateDir(dir: string): () => void {
  const lock = bindFlock();
  const fd = openLockFile(join(dir, LOCK_FILE));
  if (lock(fd, LOCK_EX | LOCK_NB) !== 0) {
    const errno = koffi.errno();
    closeSync(fd);
    if (errno === koffi.os.errno['EWOULDBLOCK']) throw new StateDirLockedError(dir);
    throw new Error(`cannot lock ${join(dir, LOCK_FILE)}: flock failed with errno ${errno}`);
  }
  let held = true;
  return () => {
    if (!held) return;
    held = false;
    // Closing the only descriptor of the open file releases the flock.
    closeSync(fd);
  };
}
