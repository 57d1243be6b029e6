import { lstat, mkdir, readlink, symlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { supported, type VmmCapabilities } from '@odyssey/hal';
import { METHODS } from '../../src/api/method-table.js';
import { prepareAdminServices } from '../../src/daemon/qrexec-services.js';
import type { TestDaemon } from '../support/harness.js';
import { exc, startDaemon } from '../support/harness.js';
import { FakeVmm } from '../support/fake-vmm.js';

/** A backend that has the optional console member of the HAL. */
class ConsoleVmm extends FakeVmm {
  override capabilities(): VmmCapabilities {
    return { ...super.capabilities(), console: supported };
  }

  async consolePath(name: string): Promise<string> {
    return `/dev/pts/${this.domains.get(name)?.xid ?? -1}`;
  }
}

let d: TestDaemon;
afterEach(async () => d?.stop());

async function withWork(vmm?: FakeVmm): Promise<TestDaemon> {
  d = await startDaemon(vmm ? { vmm } : {});
  await d.ok('admin.vm.Create.StandaloneVM', 'dom0', '', 'name=work label=blue');
  return d;
}

const text = async (method: string, dest: string) => (await d.call(method, dest)).toString('latin1');

describe('admin.vm.Console', () => {
  it('answers the pty path of a running VM when the backend has consoles', async () => {
    await withWork(new ConsoleVmm());
    expect(await text('admin.vm.Console', 'work')).toBe(
      exc('QubesVMNotRunningError', "Domain not running (either powered off or paused): 'work'"),
    );
    await d.ok('admin.vm.Start', 'work');
    expect(await text('admin.vm.Console', 'work')).toBe('0\0/dev/pts/1');
    await d.ok('admin.vm.Kill', 'work');
  });

  it('names the reason when the backend has no console, and refuses dom0', async () => {
    await withWork();
    await d.ok('admin.vm.Start', 'work');
    expect(await text('admin.vm.Console', 'work')).toBe(
      exc(
        'QubesNotImplementedError',
        'Console of work is not available with backend fake: the backend has no console support',
      ),
    );
    expect(await text('admin.vm.Console', 'dom0')).toBe(
      exc('QubesNotImplementedError', 'dom0 has no console: it is not a domain this daemon runs'),
    );
    await d.ok('admin.vm.Kill', 'work');
  });

  it('gets no qrexec socket link: its service is a script, and a stale link goes', async () => {
    d = await startDaemon();
    const dir = join(d.stateDir, 'services');
    await mkdir(dir);
    await symlink(resolve(d.socket), join(dir, 'admin.vm.Console'));
    await writeFile(join(dir, 'admin.vm.volume.Import'), '#!/bin/sh\n');
    await prepareAdminServices(dir, d.socket, METHODS);
    await expect(lstat(join(dir, 'admin.vm.Console'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await readlink(join(dir, 'admin.vm.device.pci.Assign'))).toBe(resolve(d.socket));
    expect(await readlink(join(dir, 'admin.deviceclass.List'))).toBe(resolve(d.socket));
    expect((await lstat(join(dir, 'admin.vm.volume.Import'))).isFile()).toBe(true);
  });
});
