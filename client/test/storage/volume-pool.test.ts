import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { PermissionDenied, QubesError } from '../../src/errors.js';
import { startOdysseyd, type Odysseyd } from '../helpers/odysseyd.js';
import { runQvm, type QvmOptions } from '../helpers/run-qvm.js';

// Everything here runs against a real odysseyd (core/dist, `--backend process`) over its socket.
let d: Odysseyd;
let work: string;
const MiB = 1024 * 1024;

beforeAll(async () => {
  d = await startOdysseyd();
  work = await mkdtemp(join(tmpdir(), 'odyssey-client-volumes-'));
  await d.client.vms.create({ klass: 'TemplateVM', name: 'tpl', label: 'black' });
  await d.client.vms.create({ klass: 'AppVM', name: 'app', label: 'blue', template: 'tpl' });
  await d.client.vms.create({ klass: 'AppVM', name: 'copy', label: 'red', template: 'tpl' });
});

afterAll(async () => {
  await d?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

const qvm = (args: string[], options?: QvmOptions) => runQvm(d, args, options);
const img = (vm: string, volume: string) => join(d.stateDir, 'appvms', vm, `${volume}.img`);

async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Random 1 MiB blocks with every fourth one zero (those stay holes on the server side). */
async function makeFile(name: string, size: number): Promise<string> {
  const path = join(work, name);
  const data = Buffer.alloc(size);
  for (let off = 0, i = 0; off < size; off += MiB, i++) {
    if (i % 4 !== 3) randomBytes(Math.min(MiB, size - off)).copy(data, off);
  }
  await writeFile(path, data);
  return path;
}

describe('qvm volume import (streamed through the socket)', () => {
  it('imports a 64 MiB file byte for byte, printing nothing when stderr is not a terminal', async () => {
    const file = await makeFile('64m.img', 64 * MiB);
    const result = await qvm(['volume', 'import', 'app:private', file]);
    expect(result).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(await sha256(img('app', 'private'))).toBe(await sha256(file));
    expect((await d.client.volumes.info('app', 'private')).size).toBe(String(64 * MiB));
  });

  it('--with-size resizes the volume to the file; --size does it for stdin', async () => {
    const file = await makeFile('odd.img', 3 * MiB + 5);
    expect(await qvm(['volume', 'import', '--with-size', 'app:private', file])).toEqual({
      code: 0,
      stdout: '',
      stderr: '',
    });
    expect((await d.client.volumes.info('app', 'private')).size).toBe(String(3 * MiB + 5));
    expect(await sha256(img('app', 'private'))).toBe(await sha256(file));

    const data = randomBytes(2 * MiB);
    expect(await qvm(['volume', 'import', '--size', '2MiB', 'app:private', '-'], { stdin: data })).toEqual({
      code: 0,
      stdout: '',
      stderr: '',
    });
    expect((await readFile(img('app', 'private'))).equals(data)).toBe(true);
    expect(await qvm(['volume', 'import', 'app:private', '-'], { stdin: data })).toEqual({
      code: 1,
      stdout: '',
      stderr:
        'Failed to get standard input file size, specify it explicitly with --size, or use --no-resize option\n',
    });
  });

  it('--no-resize sends a plain Import, which must match the volume size', async () => {
    const same = randomBytes(2 * MiB);
    expect(await qvm(['volume', 'import', '--no-resize', 'app:private', '-'], { stdin: same })).toMatchObject(
      {
        code: 0,
        stderr: '',
      },
    );
    expect((await readFile(img('app', 'private'))).equals(same)).toBe(true);
    const short = await qvm(['volume', 'import', '--no-resize', 'app:private', '-'], {
      stdin: same.subarray(1),
    });
    expect(short.code).toBe(1);
    expect(short.stderr).toBe(`not enough data (copied ${2 * MiB - 1} bytes, expected ${2 * MiB} bytes)\n`);
    // A failed import leaves the previous data in place.
    expect((await readFile(img('app', 'private'))).equals(same)).toBe(true);
  });

  it('draws a progress bar on a terminal: bar, percent, bytes, MiB/s', async () => {
    const file = await makeFile('4m.img', 4 * MiB);
    const result = await qvm(['volume', 'import', 'app:private', file], { stderrTty: true });
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('');
    const last = result.stderr.split('\r').at(-1) ?? '';
    expect(last).toMatch(
      /^importing app:private \[#+\] 100% {2}4\.0 MiB \/ 4\.0 MiB {2}\d+\.\d MiB\/s\x1b\[K\n$/,
    );
  });

  it('stops sending when qubesd answers early, and reports its error', async () => {
    let produced = 0;
    async function* endless(): AsyncGenerator<Buffer> {
      const block = Buffer.alloc(MiB, 1);
      for (;;) {
        produced += block.length;
        yield block;
      }
    }
    const err = await d.client.volumes
      .import('app', 'nosuch', endless(), { size: 1 << 30, withSize: true })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermissionDenied);
    expect((err as QubesError).message).toBe("Argument not in 'app volumes'");
    expect(produced).toBeLessThan(64 * MiB);
  });

  it('streams a lazily produced source with backpressure through the library', async () => {
    const size = 48 * MiB;
    let produced = 0;
    let maxAhead = 0;
    let sent = 0;
    const source = Readable.from(
      (async function* () {
        for (let off = 0; off < size; off += MiB) {
          produced += MiB;
          maxAhead = Math.max(maxAhead, produced - sent);
          yield Buffer.alloc(MiB, off / MiB);
        }
      })(),
      { objectMode: false, highWaterMark: MiB },
    );
    const progress: number[] = [];
    await d.client.volumes.import('app', 'private', source, {
      size,
      withSize: true,
      onProgress: (n, total) => {
        sent = n;
        expect(total).toBe(size);
        progress.push(n);
      },
    });
    expect(progress.at(-1)).toBe(size);
    // Never more than the source's own buffer ahead of what went to the socket.
    expect(maxAhead).toBeLessThanOrEqual(4 * MiB);
    const written = await readFile(img('app', 'private'));
    expect(written.length).toBe(size);
    expect(written[0]).toBe(0);
    expect(written[size - 1]).toBe(47);
  });
});

describe('qvm volume info / list / resize / set / clear / revert', () => {
  it('prints info like qvm-volume info, or one property', async () => {
    const info = await d.client.volumes.info('copy', 'private');
    expect((await qvm(['volume', 'info', 'copy:private'])).stdout).toBe(
      'pool               varlibqubes\n' +
        'vid                appvms/copy/private\n' +
        'rw                 True\n' +
        'source             \n' +
        'save_on_stop       True\n' +
        'snap_on_start      False\n' +
        `size               ${info.size}\n` +
        'usage              0\n' +
        'revisions_to_keep  1\n' +
        'ephemeral          False\n' +
        'is_outdated        False\n' +
        'List of available revisions (for revert): none\n',
    );
    expect((await qvm(['volume', 'info', 'copy:root', 'source'])).stdout).toBe('vm-templates/tpl/root\n');
    expect((await qvm(['volume', 'info', 'copy:root', 'snap_on_start'])).stdout).toBe('True\n');
    expect((await qvm(['volume', 'info', 'copy:private', 'revisions'])).stdout).toBe('');
    expect(await qvm(['volume', 'info', 'copy:private', 'colour'])).toMatchObject({
      code: 1,
      stderr: 'No such property: colour\n',
    });
    expect(await qvm(['volume', 'info', 'copy:nope'])).toMatchObject({
      code: 1,
      stderr: "vm 'copy' has no volume 'nope'\n",
    });
    expect(await qvm(['volume', 'info', 'ghost:private'])).toMatchObject({
      code: 1,
      stderr: "no vm 'ghost'\n",
    });
    expect(await qvm(['volume', 'info', 'copy'])).toMatchObject({
      code: 2,
      stderr: 'error: expected a vm & volume combination like foo:bar\n',
    });
    const json = JSON.parse((await qvm(['--json', 'volume', 'info', 'copy:private'])).stdout) as Record<
      string,
      unknown
    >;
    expect(json).toMatchObject({ pool: 'varlibqubes', vid: 'appvms/copy/private', revisions: [] });
    expect(json.path).toBe(img('copy', 'private'));
  });

  it('lists volumes like qvm-volume list (a shared volume once per qube)', async () => {
    expect((await qvm(['volume', 'list', 'copy'])).stdout).toBe(
      'POOL:VOLUME                       VMNAME  VOLUME_NAME  REVERT_POSSIBLE\n' +
        'linux-kernel:                     copy    kernel       No\n' +
        'varlibqubes:appvms/copy/private   copy    private      No\n' +
        'varlibqubes:appvms/copy/root      copy    root         No\n' +
        'varlibqubes:appvms/copy/volatile  copy    volatile     No\n',
    );
    const all = (await qvm(['volume', 'list', '-p', 'varlibqubes'])).stdout.split('\n');
    expect(all[0]).toBe('POOL:VOLUME                            VMNAME  VOLUME_NAME  REVERT_POSSIBLE');
    expect(all.slice(1, -1).map((l) => l.split(/ +/).slice(0, 3).join(' '))).toEqual([
      'varlibqubes:appvms/app/private app private',
      'varlibqubes:appvms/app/root app root',
      'varlibqubes:appvms/app/volatile app volatile',
      'varlibqubes:appvms/copy/private copy private',
      'varlibqubes:appvms/copy/root copy root',
      'varlibqubes:appvms/copy/volatile copy volatile',
      'varlibqubes:vm-templates/tpl/private tpl private',
      'varlibqubes:vm-templates/tpl/root tpl root',
      'varlibqubes:vm-templates/tpl/volatile tpl volatile',
    ]);
    const kernel = (await qvm(['volume', 'list', '--pool', 'linux-kernel'])).stdout;
    // One pool:vid used by three qubes: upstream puts the last qube first.
    expect(kernel.split('\n').slice(1, -1)).toEqual([
      'linux-kernel:  tpl     kernel       No',
      'linux-kernel:  app     kernel       No',
      'linux-kernel:  copy    kernel       No',
    ]);
    expect(JSON.parse((await qvm(['--json', 'volume', 'list', 'copy'])).stdout)).toContainEqual({
      vm: 'copy',
      volume: 'private',
      pool: 'varlibqubes',
      vid: 'appvms/copy/private',
      revisions: [],
    });
    expect(await qvm(['volume', 'list', 'ghost'])).toMatchObject({
      code: 2,
      stderr: "error: no such domain: 'ghost'\n",
    });
  });

  it('resizes with a unit suffix, shrinking only with --force', async () => {
    expect(await qvm(['volume', 'resize', 'copy:private', '3GiB'])).toEqual({
      code: 0,
      stdout: '',
      stderr: '',
    });
    expect((await d.client.volumes.info('copy', 'private')).size).toBe('3221225472');
    expect((await stat(img('copy', 'private'))).size).toBe(3221225472);
    expect(await qvm(['volume', 'extend', 'copy:private', '3221225472'])).toMatchObject({ code: 0 });
    const shrink = await qvm(['volume', 'resize', 'copy:private', '512MiB']);
    expect(shrink.code).toBe(1);
    expect(shrink.stderr.split('\n')[0]).toBe(
      'Refusing to shrink volume copy:private from 3221225472 to 536870912 bytes.',
    );
    // With --force the request goes out, and the driver shrinks the image (as upstream's does).
    const forced = await qvm(['volume', 'resize', '--force', 'copy:private', '512MiB']);
    expect(forced).toEqual({ code: 0, stdout: '', stderr: '' });
    expect((await stat(img('copy', 'private'))).size).toBe(536870912);
  });

  it('sets rw, revisions_to_keep and ephemeral, passing values as typed', async () => {
    expect(await qvm(['volume', 'set', 'copy:root', 'rw', 'False'])).toEqual({
      code: 0,
      stdout: '',
      stderr: '',
    });
    expect((await qvm(['volume', 'info', 'copy:root', 'rw'])).stdout).toBe('False\n');
    expect(await qvm(['volume', 'config', 'copy:root', 'rw', 'True'])).toMatchObject({ code: 0 });
    expect(await qvm(['volume', 'set', 'copy:private', 'revisions_to_keep', '0'])).toMatchObject({ code: 0 });
    expect((await qvm(['volume', 'info', 'copy:private', 'revisions_to_keep'])).stdout).toBe('0\n');
    expect(await qvm(['volume', 'set', 'copy:private', 'rw', 'maybe'])).toEqual({
      code: 1,
      stdout: '',
      stderr: 'Payload is not boolean ASCII\n',
    });
    expect(await qvm(['volume', 'set', 'copy:private', 'size', '1'])).toEqual({
      code: 1,
      stdout: '',
      stderr: 'Invalid property: size\n',
    });
    expect(await qvm(['volume', 'set', 'copy:volatile', 'ephemeral', 'False'])).toMatchObject({ code: 0 });
    await qvm(['volume', 'set', 'copy:private', 'revisions_to_keep', '1']);
  });

  it('reverts to the latest revision by default, and says when there is none', async () => {
    expect(await qvm(['volume', 'revert', 'copy:private'])).toEqual({
      code: 1,
      stdout: '',
      stderr: 'No snapshots available\n',
    });
  });

  it('clears a volume after confirmation, keeping its size', async () => {
    await d.client.volumes.importDataWithSize('copy', 'private', Buffer.alloc(MiB, 7));
    expect(await qvm(['volume', 'clear', 'copy:private'], { stdin: 'n\n' })).toEqual({
      code: 1,
      stdout: '',
      stderr:
        'This will empty the volume!\n(Data may be preserved in a revision.)\nAre you sure? [y/N] Clear cancelled.\n',
    });
    expect((await readFile(img('copy', 'private')))[0]).toBe(7);
    expect(await qvm(['volume', 'clear', 'copy:private'], { stdin: 'y\n' })).toMatchObject({ code: 0 });
    const cleared = await readFile(img('copy', 'private'));
    expect(cleared.length).toBe(MiB);
    expect(cleared.equals(Buffer.alloc(MiB))).toBe(true);
  });
});

describe('qvm volume clone', () => {
  it('copies one qube’s volume into another’s (CloneFrom + CloneTo), bytes equal', async () => {
    const file = await makeFile('clone-src.img', 16 * MiB + 4096);
    await d.client.volumes.import('app', 'private', createReadStream(file), {
      size: 16 * MiB + 4096,
      withSize: true,
    });
    expect(await qvm(['volume', 'clone', '-f', 'app:private', 'copy:private'])).toEqual({
      code: 0,
      stdout: '',
      stderr: '',
    });
    expect(await sha256(img('copy', 'private'))).toBe(await sha256(file));
    expect(await sha256(img('app', 'private'))).toBe(await sha256(file));
  });

  it('shows a spinner on a terminal and refuses volumes that are not save_on_stop', async () => {
    const tty = await qvm(['volume', 'clone', '-f', 'app:private', 'copy:private'], { stderrTty: true });
    expect(tty.code).toBe(0);
    expect(tty.stderr).toMatch(/cloning app:private to copy:private: done in \d+\.\d s\x1b\[K\n$/);
    expect(await qvm(['volume', 'clone', '-f', 'app:root', 'copy:root'])).toEqual({
      code: 1,
      stdout: '',
      stderr: 'Volumes must be save_on_stop for cloning\n',
    });
    expect(await qvm(['volume', 'clone', 'app:private', 'copy:private'], { stdin: '' })).toMatchObject({
      code: 1,
      stderr:
        'This will clone the data from app:private into copy:private!\n' +
        '(Data in copy:private may be preserved in a revision.)\nAre you sure? [y/N] Clone cancelled.\n',
    });
  });
});

describe('qvm pool', () => {
  /** size and usage are the host filesystem's, so they are masked. */
  const masked = (text: string) => text.replace(/^(size|usage)( +)\d+$/gm, '$1$2N');

  it('adds, describes, changes and removes a pool with qvm-pool’s output', async () => {
    const dir = join(work, 'extra-pool');
    await mkdir(dir);
    expect(await qvm(['pool', 'add', 'extra', 'file', '-o', `dir_path=${dir}`])).toEqual({
      code: 0,
      stdout: '',
      stderr: '',
    });
    expect((await qvm(['pool', 'list'])).stdout).toBe(
      'NAME          DRIVER\nvarlibqubes   file\nlinux-kernel  linux-kernel\nextra         file\n',
    );
    expect(masked((await qvm(['pool', 'info', 'extra'])).stdout)).toBe(
      'name                extra\n' +
        `dir_path            ${dir}\n` +
        'driver              file\n' +
        'ephemeral_volatile  False\n' +
        'revisions_to_keep   1\n' +
        'size                N\n' +
        'usage               N\n',
    );
    expect(
      await qvm(['pool', 'set', 'extra', '-o', 'revisions_to_keep=0', '-o', 'ephemeral_volatile=True']),
    ).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(masked((await qvm(['pool', 'info', 'extra', 'linux-kernel'])).stdout)).toBe(
      'name                extra\n' +
        `dir_path            ${dir}\n` +
        'driver              file\n' +
        'ephemeral_volatile  True\n' +
        'revisions_to_keep   0\n' +
        'size                N\n' +
        'usage               N\n' +
        '                    \n' +
        'name                linux-kernel\n' +
        `dir_path            ${join(d.stateDir, 'vm-kernels')}\n` +
        'driver              linux-kernel\n' +
        'included_in         varlibqubes\n',
    );
    expect(await qvm(['pool', 'set', 'extra', '-o', 'dir_path=/x'])).toEqual({
      code: 1,
      stdout: '',
      stderr: 'Setting option dir_path is not supported for pool extra\n',
    });
    expect(await qvm(['pool', 'add', 'extra', 'file', '-o', `dir_path=${dir}`])).toEqual({
      code: 1,
      stdout: '',
      stderr: "Failed to add pool extra: Storage pool is in use: 'extra'\n",
    });
    expect(await qvm(['pool', 'add', 'bad', 'file', '-o', 'foo=1'])).toEqual({
      code: 1,
      stdout: '',
      stderr: 'Failed to add pool bad: Unexpected driver options found\n',
    });
    expect(await qvm(['pool', 'remove', 'extra', 'nope'])).toEqual({
      code: 1,
      stdout: '',
      stderr: "Failed to remove pool nope: Argument not in 'pools'\n",
    });
    expect(await d.client.pools.list()).toEqual(['varlibqubes', 'linux-kernel']);
    expect(await qvm(['pool', 'info', 'extra'])).toEqual({
      code: 2,
      stdout: '',
      stderr: "error: No such pools: ['extra']\n",
    });
  });

  it('lists drivers and usage details', async () => {
    expect((await qvm(['pool', 'drivers'])).stdout).toBe(
      'DRIVER        OPTIONS\n' +
        'callback      conf_id\n' +
        'file          revisions_to_keep, dir_path, ephemeral_volatile\n' +
        'file-reflink  revisions_to_keep, dir_path, setup_check, ephemeral_volatile\n' +
        'linux-kernel  dir_path\n' +
        'lvm_thin      revisions_to_keep, volume_group, thin_pool, ephemeral_volatile\n',
    );
    expect((await qvm(['pool', 'usage', 'varlibqubes'])).stdout).toMatch(
      /^data_size {3}\d+\ndata_usage {2}\d+\n$/,
    );
    const usage = JSON.parse((await qvm(['--json', 'pool', 'usage', 'varlibqubes'])).stdout) as Record<
      string,
      number
    >;
    expect(usage.data_size).toBeGreaterThan(0);
    expect((await qvm(['pool', 'usage', 'linux-kernel'])).stdout).toBe('');
  });

  it('sends pool options sorted, after name=, as upstream does', async () => {
    const dir = join(work, 'sorted-pool');
    await mkdir(dir);
    await d.client.pools.add('file', 'sorted', { revisions_to_keep: 1, dir_path: dir });
    expect((await d.client.pools.info('sorted')).dir_path).toBe(dir);
    await d.client.pools.remove('sorted');
  });
});
