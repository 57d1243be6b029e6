import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { Daemon } from '../../src/daemon/daemon.js';
import { FakeVmm } from '../support/fake-vmm.js';
import { rawCall, request } from '../support/harness.js';

/**
 * A management qube `mgmt` whose policy lets it list only itself and the
 * qubes it created, next to qubes dom0 made (`other`, `foreign-tpl`).
 */
const POLICY =
  'admin.vm.List * mgmt @tag:created-by-mgmt allow target=dom0\n' +
  'admin.vm.List * mgmt mgmt allow target=dom0\n';

const dirs: string[] = [];
let daemon: Daemon | null = null;
afterEach(async () => {
  await daemon?.stop();
  daemon = null;
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

interface World {
  readonly call: (...a: Parameters<typeof request>) => Promise<string>;
  readonly qubesXml: () => Promise<Buffer>;
}

async function world(strictManagement: boolean | undefined): Promise<World> {
  const dir = await mkdtemp(join(tmpdir(), 'odyssey-strict-'));
  dirs.push(dir);
  const policyDir = join(dir, 'policy.d');
  await mkdir(policyDir);
  await writeFile(join(policyDir, '30-test.policy'), POLICY);
  daemon = await Daemon.start({
    socketPath: join(dir, 'q.sock'),
    stateDir: join(dir, 'state'),
    backend: new FakeVmm(),
    policyDirs: [policyDir],
    log: () => undefined,
    ...(strictManagement === undefined ? {} : { strictManagement }),
  });
  const call = async (...a: Parameters<typeof request>) =>
    (await rawCall(join(dir, 'q.sock'), request(...a))).toString('latin1');
  const ok = async (...a: Parameters<typeof request>) => expect(await call(...a)).toMatch(/^0\0/);
  await ok('admin.vm.Create.StandaloneVM', 'dom0', '', 'name=mgmt label=green');
  await ok('admin.vm.Create.TemplateVM', 'dom0', '', 'name=foreign-tpl label=black');
  await ok('admin.vm.Create.StandaloneVM', 'dom0', '', 'name=other label=red');
  await ok('admin.vm.property.Set', 'other', 'provides_network', 'True');
  await ok('admin.vm.property.Set', 'other', 'template_for_dispvms', 'True');
  await ok('admin.vm.Create.TemplateVM', 'dom0', '', 'name=my-tpl label=black', 'mgmt');
  await ok('admin.vm.Create.AppVM', 'dom0', 'my-tpl', 'name=mine label=red', 'mgmt');
  await ok('admin.vm.Create.StandaloneVM', 'dom0', '', 'name=my-net label=red', 'mgmt');
  await ok('admin.vm.property.Set', 'my-net', 'provides_network', 'True', 'mgmt');
  return { call, qubesXml: () => readFile(join(dir, 'state', 'qubes.xml')) };
}

const refused = (what: string) =>
  `2\0PermissionDenied\0\0strict-management: ${what} may only name qubes the caller can list\0`;

/** Every reference a management qube could make to `other`. */
const REFERENCES: readonly [method: string, dest: string, arg: string, payload: string, what: string][] = [
  ['admin.vm.property.Set', 'mine', 'netvm', 'other', 'netvm'],
  ['admin.vm.property.Set', 'mine', 'template', 'foreign-tpl', 'template'],
  ['admin.vm.property.Set', 'mine', 'default_dispvm', 'other', 'default_dispvm'],
  ['admin.vm.property.Set', 'mine', 'management_dispvm', 'other', 'management_dispvm'],
  ['admin.vm.property.Set', 'mine', 'guivm', 'other', 'guivm'],
  ['admin.vm.property.Set', 'mine', 'audiovm', 'other', 'audiovm'],
  ['admin.property.Set', 'dom0', 'default_netvm', 'other', 'default_netvm'],
  ['admin.vm.Create.AppVM', 'dom0', 'foreign-tpl', 'name=mine2 label=red', 'template'],
  [
    'admin.vm.device.block.Assign',
    'mine',
    'other+sda',
    "device_id='*' port_id='sda' devclass='block' backend_domain='other' mode='required' frontend_domain='mine'",
    'device backend',
  ],
];

describe('strict management (odysseyd --strict-management)', () => {
  it('refuses every reference from a management qube to a qube it cannot list, and changes nothing', async () => {
    const w = await world(true);
    for (const [method, dest, arg, payload, what] of REFERENCES) {
      const before = await w.qubesXml();
      expect(await w.call(method, dest, arg, payload, 'mgmt'), `${method}+${arg}`).toBe(refused(what));
      expect(await w.qubesXml()).toEqual(before);
    }
    // Its own qubes stay referable, and dom0 is not restricted at all.
    expect(await w.call('admin.vm.property.Set', 'mine', 'netvm', 'my-net', 'mgmt')).toBe('0\0');
    expect(await w.call('admin.vm.property.Get', 'mine', 'netvm', '', 'mgmt')).toBe(
      '0\0default=False type=vm my-net',
    );
    expect(await w.call('admin.vm.Create.AppVM', 'dom0', 'my-tpl', 'name=mine3 label=red', 'mgmt')).toBe(
      '0\0',
    );
    expect(await w.call('admin.vm.property.Set', 'mine', 'netvm', '', 'mgmt')).toBe('0\0');
    expect(await w.call('admin.vm.property.Set', 'mine', 'netvm', 'other')).toBe('0\0');
    expect(await w.call('admin.vm.property.Set', 'mine', 'template', 'foreign-tpl')).toBe('0\0');
  });

  it('is off by default, as upstream has no such check', async () => {
    for (const setting of [undefined, false]) {
      const w = await world(setting);
      expect(await w.call('admin.vm.property.Set', 'mine', 'netvm', 'other', 'mgmt')).toBe('0\0');
      expect(
        await w.call('admin.vm.Create.AppVM', 'dom0', 'foreign-tpl', 'name=mine2 label=red', 'mgmt'),
      ).toBe('0\0');
      await daemon?.stop();
      daemon = null;
    }
  });

  it('lets only dom0 set or remove disp-created-by-* tags, with or without the setting', async () => {
    const w = await world(undefined);
    const denied =
      '2\0PermissionDenied\0\0changing this tag is prohibited by qubes.ext.admin.AdminExtension\0';
    expect(await w.call('admin.vm.tag.Set', 'mine', 'disp-created-by-mgmt', '', 'mgmt')).toBe(denied);
    expect(await w.call('admin.vm.tag.Get', 'mine', 'disp-created-by-mgmt')).toBe('0\x000');
    expect(await w.call('admin.vm.tag.Set', 'mine', 'disp-created-by-mgmt')).toBe('0\0');
    expect(await w.call('admin.vm.tag.Remove', 'mine', 'disp-created-by-mgmt', '', 'mgmt')).toBe(denied);
    expect(await w.call('admin.vm.tag.Get', 'mine', 'disp-created-by-mgmt')).toBe('0\x001');
    // Other tags stay the caller's to change.
    expect(await w.call('admin.vm.tag.Set', 'mine', 'disp-note', '', 'mgmt')).toBe('0\0');
  });
});
