import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';

import { VmmError } from '@odyssey/hal';

/**
 * libvirt says only "libxenlight failed to create new domain" when libxl fails; the reason
 * (a hotplug script's timeout, a disk libxl could not add, memory) is in the file libvirt's
 * libxl driver gives libxl's own logger, on the host running libvirtd.
 */
const DRIVER_LOG = 'libxl-driver.log';

/** Debian's libvirt's directory for it. */
export const LIBXL_LOG_DIR = '/var/log/libvirt/libxl';

/** At most this much of what the log gained is read: it is libxl's, and a failing loop may fill it. */
const TAIL_BYTES = 8192;
/** ... and at most this many of its last lines go into the error. */
const TAIL_LINES = 8;

/** Where libxl's log ended when an operation began. */
export interface LibxlLogMark {
  readonly file: string;
  /** Undefined when there was no log yet: everything it holds later is new. */
  readonly size: number | undefined;
}

export async function markLibxlLog(dir: string): Promise<LibxlLogMark> {
  const file = join(dir, DRIVER_LOG);
  const size = await stat(file).then(
    (s) => s.size,
    () => undefined,
  );
  return { file, size };
}

/**
 * The last lines libxl wrote since `mark`; none when the log cannot be read (another host's
 * libvirtd, no permission). A log shorter than at the mark was rotated and is read from its start.
 * Two operations at once both see the other's lines: each line names its domain id.
 */
export async function libxlLinesSince(mark: LibxlLogMark): Promise<string[]> {
  let handle;
  try {
    handle = await open(mark.file, 'r');
  } catch {
    return [];
  }
  try {
    const size = (await handle.stat()).size;
    const from = mark.size !== undefined && mark.size <= size ? mark.size : 0;
    const start = Math.max(from, size - TAIL_BYTES);
    const buffer = Buffer.alloc(size - start);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, start);
    const lines = buffer
      .subarray(0, bytesRead)
      .toString('utf8')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '');
    // A read that began mid-line (the tail bound) drops that partial line.
    if (start > from) lines.shift();
    return lines.slice(-TAIL_LINES);
  } finally {
    await handle.close();
  }
}

/** `error` with libxl's lines since `mark` appended to its message, when there are any. */
export async function withLibxlLog(error: unknown, mark: LibxlLogMark): Promise<unknown> {
  if (!(error instanceof VmmError)) return error;
  const lines = await libxlLinesSince(mark);
  if (lines.length === 0) return error;
  return new VmmError(error.code, `${error.message}; libxl's log (${mark.file}): ${lines.join(' | ')}`, {
    cause: error,
  });
}
