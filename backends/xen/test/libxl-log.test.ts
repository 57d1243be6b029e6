import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VmmError } from '@odyssey/hal';
import { libxlLinesSince, markLibxlLog, withLibxlLog } from '../src/libxl-log.js';

/** Lines as libxl wrote them in a nested dom0 when its block hotplug scripts timed out. */
const EARLIER =
  '2026-12-05 05:39:00.100+0000: libxl: libxl_device.c:1337:device_hotplug_child_death_cb: script: /etc/xen/scripts/block failed; error detected.\n';
const TIMEOUT =
  '2026-12-05 05:46:51.167+0000: libxl: libxl_aoutils.c:539:async_exec_timeout: killing execution of /etc/xen/scripts/block add because of timeout';
const NO_DISKS =
  '2026-12-05 05:46:51.767+0000: libxl: libxl_create.c:1672:domcreate_launch_dm: Domain 3:unable to add disk devices';
const LIBVIRT_SAYS =
  "start conf-isolated: internal error: libxenlight failed to create new domain 'conf-isolated'";

describe("libxl's log in a failed start's error", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'odyssey-libxl-log-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('appends only what libxl wrote since the mark to the VmmError, keeping its code and cause', async () => {
    const log = join(dir, 'libxl-driver.log');
    await writeFile(log, EARLIER);
    const mark = await markLibxlLog(dir);
    await appendFile(log, `${TIMEOUT}\n${NO_DISKS}\n`);
    const original = new VmmError('failed', LIBVIRT_SAYS);
    const error = await withLibxlLog(original, mark);
    expect(error).toBeInstanceOf(VmmError);
    expect(error).toMatchObject({ code: 'failed', cause: original });
    expect((error as Error).message).toBe(`${LIBVIRT_SAYS}; libxl's log (${log}): ${TIMEOUT} | ${NO_DISKS}`);
  });

  it('reads a log that did not exist at the mark from its start, and a rotated one too', async () => {
    const log = join(dir, 'libxl-driver.log');
    const none = await markLibxlLog(dir);
    expect(none.size).toBeUndefined();
    await writeFile(log, `${EARLIER}${TIMEOUT}\n`);
    expect(await libxlLinesSince(none)).toEqual([EARLIER.trim(), TIMEOUT]);
    const late = await markLibxlLog(dir);
    await writeFile(log, `${NO_DISKS}\n`);
    expect(await libxlLinesSince(late)).toEqual([NO_DISKS]);
  });

  it('keeps the error as it was when libxl wrote nothing or its log cannot be read', async () => {
    const original = new VmmError('failed', LIBVIRT_SAYS);
    await writeFile(join(dir, 'libxl-driver.log'), EARLIER);
    expect(await withLibxlLog(original, await markLibxlLog(dir))).toBe(original);
    expect(await withLibxlLog(original, await markLibxlLog(join(dir, 'absent')))).toBe(original);
    const plain = new Error('not from the backend');
    await appendFile(join(dir, 'libxl-driver.log'), `${TIMEOUT}\n`);
    expect(await withLibxlLog(plain, { file: join(dir, 'libxl-driver.log'), size: 0 })).toBe(plain);
  });

  it('bounds what it reads: the last 8 whole lines of the last 8 KiB', async () => {
    const log = join(dir, 'libxl-driver.log');
    const mark = await markLibxlLog(dir);
    const lines = Array.from({ length: 400 }, (_, n) => `line ${n} ${'x'.repeat(60)}`);
    await writeFile(log, `${lines.join('\n')}\n`);
    expect(await libxlLinesSince(mark)).toEqual(lines.slice(-8));
  });
});
