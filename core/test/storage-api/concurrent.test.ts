import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { join } from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import type { TestDaemon } from '../support/harness.js';
import { exc, request, startDaemon } from '../support/harness.js';

const SIZE = 1024 * 1024;
const VID = 'appvms/work/private';
const IN_PROGRESS = exc('StoragePoolException', `Import operation in progress on ${VID}`);

let d: TestDaemon;
let events: Socket | undefined;

beforeEach(async () => {
  d = await startDaemon();
  await d.ok('admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
  await d.ok('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=work label=blue');
  await d.ok('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=other label=blue');
});
afterEach(async () => {
  events?.destroy();
  await d.stop();
});

const privateImg = (vm = 'work'): string => join(d.stateDir, 'appvms', vm, 'private.img');

/** ImportWithSize's payload: the size line, then the data. */
function withSize(data: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${data.length}\n`), data]);
}

/**
 * Subscribes to admin.Events of `vm`; resolves once the subscription is live,
 * with a function that waits for `needle` in the stream.
 */
function subscribeEvents(vm: string): Promise<(needle: string) => Promise<void>> {
  return new Promise((ready) => {
    let seen = '';
    const waiters: [string, () => void][] = [];
    events = connect(d.socket);
    events.on('connect', () => events?.end(request('admin.Events', vm)));
    events.on('data', (c: Buffer) => {
      seen += c.toString('latin1');
      for (const [needle, resolve] of waiters) if (seen.includes(needle)) resolve();
      if (seen.includes('connection-established\0'))
        ready(
          (needle) =>
            new Promise((resolve) => {
              if (seen.includes(needle)) resolve();
              else waiters.push([needle, resolve]);
            }),
        );
    });
  });
}

/**
 * Starts an import of `data` into work:private and holds back its last byte;
 * resolves once the daemon announced the import, with a function that sends
 * the rest and returns the reply.
 */
async function heldImport(data: Buffer): Promise<() => Promise<string>> {
  const announced = (await subscribeEvents('work'))('domain-volume-import-begin\0');
  const sock = connect(d.socket);
  const chunks: Buffer[] = [];
  sock.on('data', (c: Buffer) => chunks.push(c));
  const closed = new Promise<string>((resolve) =>
    sock.on('close', () => resolve(Buffer.concat(chunks).toString('latin1'))),
  );
  const all = Buffer.concat([request('admin.vm.volume.ImportWithSize', 'work', 'private'), withSize(data)]);
  sock.write(all.subarray(0, all.length - 1));
  await announced;
  return () => {
    sock.end(all.subarray(all.length - 1));
    return closed;
  };
}

async function call(method: string, dest: string, arg = '', payload: Buffer | string = ''): Promise<string> {
  return (await d.call(method, dest, arg, payload)).toString('latin1');
}

async function leftovers(vm = 'work'): Promise<string[]> {
  return (await readdir(join(d.stateDir, 'appvms', vm))).filter((n) => !/^(private|volatile)\.img/.test(n));
}

describe('concurrent storage calls on one volume', () => {
  it('Import vs Import, and Clear: the second is refused, the volume holds the first', async () => {
    const a = randomBytes(SIZE);
    const finish = await heldImport(a);
    expect(await call('admin.vm.volume.ImportWithSize', 'work', 'private', withSize(randomBytes(SIZE)))).toBe(
      IN_PROGRESS,
    );
    expect(await call('admin.vm.volume.Clear', 'work', 'private')).toBe(IN_PROGRESS);
    expect(await finish()).toBe('0\0');
    expect((await readFile(privateImg())).equals(a)).toBe(true);
    expect(await leftovers()).toEqual([]);
  });

  it('Import vs Start: a start during the import is refused; an import into a started qube too', async () => {
    const a = randomBytes(SIZE);
    const finish = await heldImport(a);
    expect(await call('admin.vm.Start', 'work')).toBe(IN_PROGRESS);
    expect(await d.ok('admin.vm.CurrentState', 'work')).toContain('power_state=Halted');
    expect(await finish()).toBe('0\0');
    expect((await readFile(privateImg())).equals(a)).toBe(true);

    await d.ok('admin.vm.Start', 'work');
    const b = randomBytes(SIZE);
    const reply = await call('admin.vm.volume.ImportWithSize', 'work', 'private', withSize(b));
    expect(reply).toBe(exc('QubesVMNotHaltedError', "Domain is not powered off: 'work'"));
    await d.ok('admin.vm.Kill', 'work');
    expect((await readFile(privateImg())).equals(a)).toBe(true);
  });

  it('Clone vs Import: CloneTo during an import is refused', async () => {
    const c = randomBytes(SIZE);
    expect(await call('admin.vm.volume.ImportWithSize', 'other', 'private', withSize(c))).toBe('0\0');
    const a = randomBytes(SIZE);
    const finish = await heldImport(a);
    const token = await d.ok('admin.vm.volume.CloneFrom', 'other', 'private');
    expect(await call('admin.vm.volume.CloneTo', 'work', 'private', token)).toBe(IN_PROGRESS);
    expect(await finish()).toBe('0\0');
    expect((await readFile(privateImg())).equals(a)).toBe(true);
    // Once the import is done, the clone goes through.
    const again = await d.ok('admin.vm.volume.CloneFrom', 'other', 'private');
    expect(await call('admin.vm.volume.CloneTo', 'work', 'private', again)).toBe('0\0');
    expect((await readFile(privateImg())).equals(c)).toBe(true);
  });

  it('Revert vs Start and vs Import: serialized or refused, and the disk agrees with the answers', async () => {
    const x = randomBytes(SIZE);
    expect(await call('admin.vm.volume.ImportWithSize', 'work', 'private', withSize(x))).toBe('0\0');
    // A start and stop commits the volume and keeps x as a revision (an import keeps none, as upstream).
    await d.ok('admin.vm.Start', 'work');
    await d.ok('admin.vm.Kill', 'work');
    const revision =
      (await d.ok('admin.vm.volume.ListSnapshots', 'work', 'private')).trim().split('\n').pop() ?? '';
    expect(revision).toMatch(/^\d+$/);

    const finish = await heldImport(randomBytes(SIZE));
    expect(await call('admin.vm.volume.Revert', 'work', 'private', revision)).toBe(IN_PROGRESS);
    expect(await finish()).toBe('0\0');
    const committed = await readFile(privateImg());

    const [started, reverted] = await Promise.all([
      call('admin.vm.Start', 'work'),
      call('admin.vm.volume.Revert', 'work', 'private', revision),
    ]);
    expect(started).toBe('0\0');
    const dirty = await readFile(join(d.stateDir, 'appvms/work/private-dirty.img'));
    if (reverted === '0\0') {
      // Revert went first: the qube started on x, the revision's data.
      expect(dirty.equals(x)).toBe(true);
    } else {
      expect(reverted).toBe(exc('StoragePoolException', `Cannot revert: ${VID} is not cleanly stopped`));
      expect(dirty.equals(committed)).toBe(true);
    }
    await d.ok('admin.vm.Kill', 'work');
  });

  it('Remove during Import: the removal wins, the import fails, nothing is left', async () => {
    const finish = await heldImport(randomBytes(SIZE));
    expect(await call('admin.vm.Remove', 'work')).toBe('0\0');
    expect(await finish()).toBe(exc('StoragePoolException', `No import operation in progress on ${VID}`));
    await expect(readdir(join(d.stateDir, 'appvms', 'work'))).rejects.toThrow(/ENOENT/);
    expect(await readFile(join(d.stateDir, 'qubes.xml'), 'utf8')).not.toContain('name="work"');
  });
});
