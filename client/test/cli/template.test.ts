import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startOdysseyd, type Odysseyd } from '../helpers/odysseyd.js';
import { runQvm } from '../helpers/run-qvm.js';

// `qvm template` against a real odysseyd (`--backend process`). The builder is a stand-in script that
// prints the paths of small files in the real builder's output format: what mmdebstrap makes is
// tested by conformance-tests' template test; here, what the client does with a build.
let d: Odysseyd;
let work: string;
let env: Record<string, string>;
const root = randomBytes(3 * 1024 * 1024 + 512);
const KV = '6.1.0-99-cloud-amd64';

beforeAll(async () => {
  d = await startOdysseyd();
  work = await mkdtemp(join(tmpdir(), 'odyssey-client-template-'));
  await writeFile(join(work, 'root.img'), root);
  await writeFile(join(work, 'vmlinuz'), 'kernel bytes');
  await writeFile(join(work, 'initramfs'), 'initramfs bytes');
  const builder = join(work, 'builder.sh');
  await writeFile(
    builder,
    [
      '#!/bin/sh',
      `echo "$@" >>${join(work, 'builder-args')}`,
      'echo "building $1" >&2',
      'echo key=0123456789abcdef',
      `echo root=${join(work, 'root.img')}`,
      `echo vmlinuz=${join(work, 'vmlinuz')}`,
      `echo initramfs=${join(work, 'initramfs')}`,
      `echo kernel_version=${KV}`,
      'echo rpc_services=qubes.VMExec,qubes.VMRootShell',
      '',
    ].join('\n'),
  );
  await chmod(builder, 0o755);
  env = { ODYSSEY_TEMPLATE_BUILDER: builder };
});

afterAll(async () => {
  await d?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('qvm template', () => {
  it('lists debian-12 as available before it is installed', async () => {
    const r = await runQvm(d, ['template', 'list'], { env });
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toMatch(/^Available Templates\n\[name\] +\[version\] +\[reponame\]\ndebian-12 +0:12 /);
    expect(r.stdout).not.toContain('Installed');
  });

  it('refuses a template the builder does not know, building nothing', async () => {
    const r = await runQvm(d, ['template', 'install', 'fedora-41'], { env });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("Template 'fedora-41' not found");
    expect(await readFile(join(work, 'builder-args'), 'utf8').catch(() => '')).toBe('');
  });

  it('installs: TemplateVM, root imported byte for byte, kernel in the pool, default_kernel, features', async () => {
    const r = await runQvm(d, ['template', 'install', 'debian-12'], { env });
    expect(r).toMatchObject({ code: 0, stdout: `Installed template debian-12 (kernel ${KV}-debian-12)\n` });
    expect(r.stderr).toBe('building debian-12\n');
    const vms = await d.client.vms.list();
    expect(vms.find((v) => v.name === 'debian-12')?.klass).toBe('TemplateVM');
    const clean = join(d.stateDir, 'vm-templates', 'debian-12', 'root.img');
    expect((await readFile(clean)).equals(root)).toBe(true);
    expect((await d.client.volumes.info('debian-12', 'root')).size).toBe(String(root.length));
    const kdir = join(d.stateDir, 'vm-kernels', `${KV}-debian-12`);
    expect(await readFile(join(kdir, 'vmlinuz'), 'utf8')).toBe('kernel bytes');
    expect(await readFile(join(kdir, 'initramfs'), 'utf8')).toBe('initramfs bytes');
    expect((await d.client.globalProperties.get('default_kernel')).value).toBe(`${KV}-debian-12`);
    expect((await d.client.vmProperties('debian-12').get('kernel')).value).toBe(`${KV}-debian-12`);
    expect(await d.client.features.get('debian-12', 'template-name')).toBe('debian-12');
    expect(await d.client.features.get('debian-12', 'template-release')).toBe('0123456789abcdef');
    expect(await d.client.features.get('debian-12', 'vmexec')).toBe('1');
    expect(await d.client.features.get('debian-12', 'supported-rpc.qubes.VMExec')).toBe('1');
    expect(await d.client.features.get('debian-12', 'supported-rpc.qubes.VMRootShell')).toBe('1');
  });

  it('skips an installed template without building again', async () => {
    const before = await readFile(join(work, 'builder-args'), 'utf8');
    const r = await runQvm(d, ['template', 'install', 'debian-12'], { env });
    expect(r).toMatchObject({ code: 0, stderr: "Template 'debian-12' already installed, skipping...\n" });
    expect(await readFile(join(work, 'builder-args'), 'utf8')).toBe(before);
  });

  it('lists it as installed under upstream qvm-template too', async () => {
    const r = await runQvm(d, ['list', '--installed'], { env, invokedAs: 'qvm-template' });
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toBe(
      'Installed Templates\n[name]     [version]              [reponame]\n' +
        'debian-12  0:12-0123456789abcdef  @odyssey-build\n',
    );
  });

  it('refuses to remove a template a qube uses, then removes it once unused', async () => {
    await d.client.vms.create({ klass: 'AppVM', name: 'work', label: 'red', template: 'debian-12' });
    const used = await runQvm(d, ['template', 'remove', '-y', 'debian-12'], { env });
    expect(used.code).toBe(1);
    expect(used.stderr).toContain("Template 'debian-12' is in use by: work");
    await d.client.vms.remove('work');
    expect(await runQvm(d, ['template', 'remove', '-y', 'debian-12'], { env })).toMatchObject({ code: 0 });
    expect((await d.client.vms.list()).some((v) => v.name === 'debian-12')).toBe(false);
  });

  it('gives a template its own kernel when default_kernel names another', async () => {
    await runQvm(d, ['template', 'install', 'debian-12'], { env });
    await runQvm(d, ['template', 'remove', '-y', 'debian-12'], { env });
    // default_kernel stays as the first install set it; point it elsewhere as another image would.
    const other = join(d.stateDir, 'vm-kernels', 'other');
    await mkdir(other);
    await writeFile(join(other, 'vmlinuz'), 'x');
    await d.client.globalProperties.set('default_kernel', 'other');
    expect(await runQvm(d, ['template', 'install', 'debian-12'], { env })).toMatchObject({ code: 0 });
    expect((await d.client.globalProperties.get('default_kernel')).value).toBe('other');
    expect((await d.client.vmProperties('debian-12').get('kernel')).value).toBe(`${KV}-debian-12`);
  });
});
