import { createHash } from 'node:crypto';
import { readFile, rm, stat } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import type { TestDaemon } from '../support/harness.js';
import { exc, request, startDaemon } from '../support/harness.js';

let d: TestDaemon;
afterEach(async () => d?.stop());

async function withTemplate(): Promise<TestDaemon> {
  d = await startDaemon();
  await d.ok('admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
  await d.ok('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=work label=blue');
  return d;
}

/** Streams `data` as the payload of one call, the way a large import arrives. */
function streamCall(socket: string, header: Buffer, data: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = connect(socket);
    s.on('connect', () => {
      s.write(header);
      for (let i = 0; i < data.length; i += 65536) s.write(data.subarray(i, i + 65536));
      s.end();
    });
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', reject);
    s.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
  });
}

describe('volumes through the Admin API', () => {
  it('creates the upstream layout on real files and reports it byte for byte', async () => {
    await withTemplate();
    expect(await d.ok('admin.vm.volume.List', 'work')).toBe('root\nprivate\nvolatile\nkernel\n');
    const info = await d.ok('admin.vm.volume.Info', 'work', 'private');
    expect(info).toBe(
      `pool=varlibqubes\nvid=appvms/work/private\nsize=2147483648\nusage=0\nrw=True\nsource=\npath=${join(d.stateDir, 'appvms/work/private.img')}\nsave_on_stop=True\nsnap_on_start=False\nrevisions_to_keep=1\nephemeral=False\nis_outdated=False\n`,
    );
    expect(await d.ok('admin.vm.volume.Info', 'work', 'root')).toContain('source=vm-templates/tpl/root\n');
    expect((await stat(join(d.stateDir, 'vm-templates/tpl/root.img'))).size).toBe(10737418240);
    expect((await stat(join(d.stateDir, 'appvms/work/private.img'))).blocks).toBeLessThan(64);
    expect((await d.call('admin.vm.volume.Info', 'work', 'nosuch')).toString('latin1')).toBe(
      exc('PermissionDenied', "Argument not in 'work volumes'"),
    );
    expect(await d.ok('admin.vm.volume.List', 'dom0')).toBe('');
    await d.daemon.store.flush();
    const xml = await readFile(join(d.stateDir, 'qubes.xml'), 'utf8');
    expect(xml).toContain(
      '<volume name="private" pool="varlibqubes" vid="appvms/work/private" revisions_to_keep="1" rw="True" save_on_stop="True" snap_on_start="False" size="2147483648"/>',
    );
  });

  it('resizes (growing and shrinking, as upstream), sets flags, and keeps them across saves', async () => {
    await withTemplate();
    await d.ok('admin.vm.volume.Resize', 'work', 'private', '3221225472');
    expect(await d.ok('admin.vm.volume.Info', 'work', 'private')).toContain('size=3221225472\n');
    await d.ok('admin.vm.volume.Resize', 'work', 'private', '2147483648');
    expect(await d.ok('admin.vm.volume.Info', 'work', 'private')).toContain('size=2147483648\n');
    await d.ok('admin.vm.volume.Resize', 'work', 'private', '3221225472');
    await d.ok('admin.vm.volume.Set.rw', 'work', 'root', 'False');
    expect(await d.ok('admin.vm.volume.Info', 'work', 'root')).toContain('rw=False\n');
    await d.daemon.store.flush();
    const xml = await readFile(join(d.stateDir, 'qubes.xml'), 'utf8');
    expect(xml).toContain(
      'vid="appvms/work/private" revisions_to_keep="1" rw="True" save_on_stop="True" snap_on_start="False" size="3221225472"',
    );
    expect((await d.call('admin.vm.volume.Set.rw', 'work', 'root', 'maybe')).toString('latin1')).toBe(
      exc('ProtocolError', 'Payload is not boolean ASCII'),
    );
  });

  it('imports a streamed payload of more than the 64 KiB request limit, checking its size', async () => {
    await withTemplate();
    const data = Buffer.alloc(8 << 20);
    for (let i = 0; i < data.length; i += 4096) data.writeUInt32LE(i, i);
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    const img = join(d.stateDir, 'appvms/work/private.img');
    const withSize = request('admin.vm.volume.ImportWithSize', 'work', 'private');
    expect(await streamCall(d.socket, withSize, Buffer.concat([Buffer.from(`${data.length}\n`), data]))).toBe(
      '0\0',
    );
    expect(await d.ok('admin.vm.volume.Info', 'work', 'private')).toContain(`size=${data.length}\n`);
    expect(sha(await readFile(img))).toBe(sha(data));
    const header = request('admin.vm.volume.Import', 'work', 'private');
    const short = await streamCall(d.socket, header, data.subarray(0, 1000));
    expect(short.startsWith('2\0')).toBe(true);
    expect(sha(await readFile(img))).toBe(sha(data));
    const next = Buffer.alloc(data.length, 5);
    expect(await streamCall(d.socket, header, next)).toBe('0\0');
    expect(sha(await readFile(img))).toBe(sha(next));
  });

  it('clones with a one-time token', async () => {
    await withTemplate();
    await d.ok('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=copy label=red');
    const data = Buffer.alloc(1 << 20, 9);
    const withSize = request('admin.vm.volume.ImportWithSize', 'work', 'private');
    expect(await streamCall(d.socket, withSize, Buffer.concat([Buffer.from(`${data.length}\n`), data]))).toBe(
      '0\0',
    );
    const token = await d.ok('admin.vm.volume.CloneFrom', 'work', 'private');
    expect(token).toMatch(/^[A-Za-z0-9]{32}$/);
    await d.ok('admin.vm.volume.CloneTo', 'copy', 'private', token);
    expect((await readFile(join(d.stateDir, 'appvms/copy/private.img'))).equals(data)).toBe(true);
    expect((await d.call('admin.vm.volume.CloneTo', 'copy', 'private', token)).toString('latin1')).toBe(
      exc('QubesVolumeCopyTokenNotFoundError', "'Token to clone volume of qube was not found'"),
    );
  });

  it("starts a qube of a Windows template from a copy of the template's private volume", async () => {
    await withTemplate();
    const data = Buffer.alloc(3 << 20, 0x5a);
    const header = Buffer.from('admin.vm.volume.ImportWithSize+private dom0 name tpl\0');
    expect(await streamCall(d.socket, header, Buffer.concat([Buffer.from(`${data.length}\n`), data]))).toBe(
      '0\0',
    );
    const privateOf = (vm: string): Promise<Buffer> => readFile(join(d.stateDir, `appvms/${vm}/private.img`));
    const templatePrivate = (): Promise<Buffer> => readFile(join(d.stateDir, 'vm-templates/tpl/private.img'));
    expect((await templatePrivate()).equals(data)).toBe(true);
    // Created before the template says it is Windows: `work` keeps its empty volume.
    expect((await stat(join(d.stateDir, 'appvms/work/private.img'))).size).toBe(2147483648);

    await d.ok('admin.vm.feature.Set', 'tpl', 'os', 'Windows');
    await d.ok('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=win label=blue');
    expect((await privateOf('win')).equals(data)).toBe(true);
    expect(await d.ok('admin.vm.volume.Info', 'win', 'private')).toContain(`size=${data.length}\n`);
    // A disposable's private volume is thrown away at each stop: it is never a copy.
    await d.ok('admin.vm.property.Set', 'win', 'template_for_dispvms', 'True');
    await d.ok('admin.vm.Create.DispVM', 'dom0', 'win', 'name=wdisp label=red');
    await expect(stat(join(d.stateDir, 'appvms/wdisp/private.img'))).rejects.toThrow();

    // A copy that fails leaves neither the qube nor its disks.
    await rm(join(d.stateDir, 'vm-templates/tpl/private.img'));
    const failed = (await d.call('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=lost label=blue')).toString(
      'latin1',
    );
    expect(failed.startsWith('2\0StoragePoolException\0')).toBe(true);
    expect(await d.ok('admin.vm.List', 'dom0')).not.toContain('lost ');
    await expect(stat(join(d.stateDir, 'appvms/lost'))).rejects.toThrow();

    await d.ok('admin.vm.feature.Set', 'tpl', 'os', 'Linux');
    await d.ok('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=lin label=blue');
    expect((await stat(join(d.stateDir, 'appvms/lin/private.img'))).size).toBe(2147483648);
  });

  it('gives the backend the disks on start and removes them with the VM', async () => {
    await withTemplate();
    await d.ok('admin.vm.Start', 'work');
    const spec = d.vmm.domains.get('work')?.spec;
    expect(spec?.volumes.map((v) => `${v.name}:${v.readOnly}`)).toEqual([
      'root:false',
      'private:false',
      'volatile:false',
    ]);
    expect(
      spec?.volumes[1]?.path.endsWith('appvms/work/private-dirty.img') ||
        spec?.volumes[1]?.path.endsWith('private.img'),
    ).toBe(true);
    await d.ok('admin.vm.Kill', 'work');
    await d.ok('admin.vm.Remove', 'work');
    await expect(stat(join(d.stateDir, 'appvms/work'))).rejects.toThrow();
  });
});

describe('pools through the Admin API', () => {
  it('lists, describes, adds and removes pools as upstream does', async () => {
    d = await startDaemon();
    expect(await d.ok('admin.pool.List', 'dom0')).toBe('varlibqubes\nlinux-kernel\n');
    expect(await d.ok('admin.pool.ListDrivers', 'dom0')).toMatch(
      /^file revisions_to_keep dir_path ephemeral_volatile\n/m,
    );
    expect(await d.ok('admin.pool.Info', 'dom0', 'linux-kernel')).toBe(
      `dir_path=${join(d.stateDir, 'vm-kernels')}\ndriver=linux-kernel\nname=linux-kernel\nincluded_in=varlibqubes\n`,
    );
    await d.ok('admin.pool.Add', 'dom0', 'file', `name=extra\ndir_path=${join(d.stateDir, 'extra')}\n`);
    expect(await d.ok('admin.pool.List', 'dom0')).toBe('varlibqubes\nlinux-kernel\nextra\n');
    expect((await d.call('admin.pool.Add', 'dom0', 'file', 'name=bad\nfoo=1\n')).toString('latin1')).toBe(
      exc('ProtocolError', 'Unexpected driver options found'),
    );
    await d.ok('admin.vm.CreateInPool.StandaloneVM', 'dom0', '', 'name=sa label=red pool=extra');
    expect(await d.ok('admin.vm.volume.Info', 'sa', 'private')).toContain('pool=extra\n');
    expect((await d.call('admin.pool.Remove', 'dom0', 'extra')).toString('latin1')).toBe(
      exc('QubesPoolInUseError', "Storage pool is in use: 'extra'"),
    );
    await d.ok('admin.vm.Remove', 'sa');
    await d.ok('admin.pool.Remove', 'dom0', 'extra');
    expect((await d.call('admin.pool.Info', 'dom0', 'extra')).toString('latin1')).toBe(
      exc('PermissionDenied', "Argument not in 'pools'"),
    );
  });
});

describe("the 2017 draft's pool-addressed volume calls", () => {
  it('reach the same volumes by pool and vid', async () => {
    await withTemplate();
    const byVm = await d.ok('admin.vm.volume.Info', 'work', 'private');
    expect(await d.ok('admin.pool.volume.Info', 'dom0', 'varlibqubes', 'appvms/work/private')).toBe(byVm);
    await d.ok('admin.pool.volume.Resize', 'dom0', 'varlibqubes', 'appvms/work/private 3221225472');
    expect(await d.ok('admin.vm.volume.Info', 'work', 'private')).toContain('size=3221225472\n');
    const token = await d.ok('admin.pool.volume.CloneFrom', 'dom0', 'varlibqubes', 'appvms/work/private');
    expect(token).toMatch(/^[A-Za-z0-9]{32}$/);
    expect(
      (await d.call('admin.pool.volume.Info', 'dom0', 'varlibqubes', 'appvms/nosuch/private')).toString(
        'latin1',
      ),
    ).toBe(exc('PermissionDenied', "Argument not in 'varlibqubes volumes'"));
  });
});
