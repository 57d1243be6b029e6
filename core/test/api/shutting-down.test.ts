import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { type PowerState, supported, type VmmCapabilities } from '@odyssey/hal';
import { FakeVmm } from '../support/fake-vmm.js';
import type { TestDaemon } from '../support/harness.js';
import { exc, startDaemon } from '../support/harness.js';

/**
 * A qube the hypervisor still has active while it goes down (Halting, Dying, or Crashed and
 * not yet destroyed) is running to upstream's is_running(), which asks only whether libvirt
 * has the domain active. Each expected reply is what upstream's handler answered with its
 * libvirt domain in that state (qubes-core-admin 4.4.0, libvirt mocked as in its API tests).
 */
class ConsoleVmm extends FakeVmm {
  override capabilities(): VmmCapabilities {
    return { ...super.capabilities(), console: supported };
  }

  async consolePath(name: string): Promise<string> {
    return `/dev/pts/${this.domains.get(name)?.xid ?? -1}`;
  }
}

let d: TestDaemon | undefined;
let stateDir: string | undefined;
afterEach(async () => {
  await d?.stop();
  d = undefined;
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
  stateDir = undefined;
});

const text = async (method: string, dest: string, arg = '', payload = '') => {
  if (!d) throw new Error('no daemon');
  return (await d.call(method, dest, arg, payload)).toString('latin1');
};

async function eventually(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('condition never became true');
}

/**
 * sys-net (a netvm), work (its client) and other (no netvm), all started; then the daemon
 * restarts while the backend has each qube of `states` in its state there, as when odysseyd
 * died during their shutdown.
 */
async function restartedWhile(states: Readonly<Record<string, PowerState>>): Promise<TestDaemon> {
  stateDir = await mkdtemp(join(tmpdir(), 'odyssey-state-'));
  const vmm = new ConsoleVmm();
  const first = await startDaemon({ stateDir, vmm });
  await first.ok('admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
  await first.ok('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=sys-net label=red');
  await first.ok('admin.vm.property.Set', 'sys-net', 'provides_network', 'True');
  await first.ok('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=work label=blue');
  await first.ok('admin.vm.property.Set', 'work', 'netvm', 'sys-net');
  await first.ok('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=other label=green');
  await first.ok('admin.vm.Start', 'work');
  await first.ok('admin.vm.Start', 'other');
  await first.stop();
  for (const [name, state] of Object.entries(states)) {
    const dom = vmm.domains.get(name);
    if (!dom) throw new Error(`${name} is not defined in the fake Vmm`);
    dom.state = state;
  }
  const again = await startDaemon({ stateDir, vmm });
  d = again;
  // The states are read from the backend before it is announced connected.
  await eventually(async () => again.logs.includes('info: backend fake connected'));
  return again;
}

describe('a qube still shutting down', () => {
  for (const state of ['Halting', 'Dying', 'Crashed'] as const) {
    it(`${state}: Console answers its pty, Start leaves it be, and its stop still ends in Halted`, async () => {
      const t = await restartedWhile({ work: state });
      expect((await text('admin.vm.CurrentState', 'work')).endsWith(`power_state=${state}`)).toBe(true);
      expect(await text('admin.vm.Console', 'work')).toBe('0\0/dev/pts/2');
      const calls = t.vmm.calls.length;
      expect(await text('admin.vm.Start', 'work')).toBe('0\0');
      expect(t.vmm.calls.slice(calls)).toEqual([]);
      t.vmm.crash('work');
      await eventually(async () =>
        (await text('admin.vm.CurrentState', 'work')).endsWith('power_state=Halted'),
      );
      expect(await text('admin.vm.Console', 'work')).toBe(
        exc('QubesVMNotRunningError', "Domain not running (either powered off or paused): 'work'"),
      );
    });
  }

  it('keeps its netvm from a shutdown unless forced', async () => {
    await restartedWhile({ work: 'Halting' });
    expect(await text('admin.vm.Shutdown', 'sys-net')).toBe(
      exc('QubesVMInUseError', 'There are other VMs connected to this VM: work'),
    );
    expect(await text('admin.vm.Shutdown', 'sys-net', 'force')).toBe('0\0');
  });

  it("as a netvm, may become a running qube's netvm", async () => {
    await restartedWhile({ 'sys-net': 'Halting' });
    expect(await text('admin.vm.property.Set', 'other', 'netvm', 'sys-net')).toBe('0\0');
    expect(await text('admin.vm.property.Get', 'other', 'netvm')).toBe('0\0default=False type=vm sys-net');
  });
});
