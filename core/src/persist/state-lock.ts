import lockfile from 'proper-lockfile';

/**
 * One daemon per state dir. proper-lockfile keeps an mkdir-based lock fresh and
 * treats it as stale after the holder dies, so a crashed daemon does not block
 * the next start, while a live one does.
 */
export class StateDirLockedError extends Error {
  constructor(dir: string) {
    super(`state dir ${dir} is in use by another odysseyd`);
    this.name = 'StateDirLockedError';
  }
}

export async function lockStateDir(
  dir: string,
  onCompromised: (err: Error) => void,
): Promise<() => Promise<void>> {
  try {
    return await lockfile.lock(dir, {
      lockfilePath: `${dir}/odysseyd.lock`,
      stale: 10_000,
      update: 2_000,
      realpath: false,
      onCompromised,
    });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ELOCKED') throw new StateDirLockedError(dir);
    throw e;
  }
}
