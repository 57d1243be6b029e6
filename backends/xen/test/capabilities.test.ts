import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DomainSpec } from '@odyssey/hal';
import type { Libvirt } from '@odyssey/libvirt';
import { findHvmSupport, hypervisorGuests, virtModeSupport } from '../src/host-support.js';
import { XenFlavour } from '../src/xen-flavour.js';

/** The shape of libvirt's libxl capabilities: `xen` (PV) always, `hvm` and `xenpvh` with VT-x/AMD-V. */
function capabilitiesXml(osTypes: string[], emulator = '/usr/lib/xen/bin/qemu-system-i386'): string {
  const guests = osTypes.map(
    (t) =>
      `<guest><os_type>${t}</os_type><arch name='x86_64'><wordsize>64</wordsize><emulator>${emulator}</emulator><machine>x</machine><domain type='xen'/></arch></guest>`,
  );
  return `<capabilities><host><cpu><arch>x86_64</arch></cpu></host>${guests.join('')}</capabilities>`;
}

const fakeLibvirt = (xml: string): Libvirt =>
  ({ host: { getCapabilities: async () => xml } }) as unknown as Libvirt;

let dir: string;
let deviceModel: string;
let hvmloader: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'xen-caps-'));
  deviceModel = join(dir, 'qemu-system-i386');
  hvmloader = join(dir, 'hvmloader');
  await writeFile(deviceModel, '#!/bin/sh\n');
  await chmod(deviceModel, 0o755);
  await writeFile(hvmloader, '');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const missing = (name: string) => join('/nonexistent', name);

describe('HVM support on the host', () => {
  it('needs an executable device model and hvmloader, and names what is missing', () => {
    expect(findHvmSupport({ deviceModels: [missing('dm'), deviceModel], hvmloaders: [hvmloader] })).toEqual({
      supported: true,
      deviceModel,
      hvmloader,
    });
    const noDm = findHvmSupport({ deviceModels: [missing('dm'), hvmloader], hvmloaders: [hvmloader] });
    expect(noDm).toMatchObject({ supported: false });
    expect(noDm.supported || noDm.reason).toContain('/nonexistent/dm');
    const noLoader = findHvmSupport({ deviceModels: [deviceModel], hvmloaders: [missing('hvmloader')] });
    expect(noLoader.supported || noLoader.reason).toContain('no hvmloader at /nonexistent/hvmloader');
  });

  it("reads the guest types and HVM device model from libvirt's capabilities", () => {
    const guests = hypervisorGuests(capabilitiesXml(['hvm', 'xen', 'xenpvh'], '/dm'));
    expect([...guests.osTypes].sort()).toEqual(['hvm', 'xen', 'xenpvh']);
    expect(guests.hvmEmulator).toBe('/dm');
    expect(hypervisorGuests(capabilitiesXml(['xen'])).osTypes).toEqual(new Set(['xen']));
  });

  it('needs hardware virtualisation for PVH and HVM', () => {
    const hvm = findHvmSupport({ deviceModels: [deviceModel], hvmloaders: [hvmloader] });
    const all = virtModeSupport(hvm, hypervisorGuests(capabilitiesXml(['hvm', 'xen', 'xenpvh'])));
    expect(Object.values(all).every((c) => c.supported)).toBe(true);
    const tcg = virtModeSupport(hvm, hypervisorGuests(capabilitiesXml(['xen'])));
    expect(tcg.pv.supported).toBe(true);
    expect(tcg.pvh).toMatchObject({
      supported: false,
      reason: expect.stringContaining('no hardware virtualisation'),
    });
    expect(tcg.hvm).toMatchObject({ supported: false, reason: expect.stringContaining('HVM needs') });
  });
});

describe('Xen flavour', () => {
  const log = () => undefined;
  // Never written: no spec here asks for an uplink.
  const runtimeDir = '/nonexistent/odyssey-xen-test';

  it('declares HVM only with a device model, and says why not', async () => {
    const withDm = new XenFlavour({
      runtimeDir,
      log,
      hostPaths: { deviceModels: [deviceModel], hvmloaders: [hvmloader] },
    });
    expect(withDm.capabilities().virtModes).toEqual(['pv', 'pvh', 'hvm']);
    const without = new XenFlavour({
      runtimeDir,
      log,
      hostPaths: { deviceModels: [missing('dm')], hvmloaders: [hvmloader] },
    });
    const caps = without.capabilities();
    expect(caps).toMatchObject({
      name: 'xen',
      virtModes: ['pv', 'pvh'],
      pause: { supported: true },
      suspend: { supported: true },
      stats: { supported: true },
      blockDevices: { supported: false },
      pciDevices: { supported: false },
      usbDevices: { supported: false },
      vmToVmVchan: { supported: true },
      network: { supported: true },
    });
    expect(without.virtModes().hvm).toMatchObject({ reason: expect.stringContaining('device model') });
    const spec: DomainSpec = {
      name: 'h',
      uuid: '4f8c2a1e-0b7d-4c55-9a3e-2f1d6b0c8e91',
      memoryMiB: 256,
      maxMemoryMiB: 0,
      vcpus: 1,
      virtMode: 'hvm',
      volumes: [],
      debug: false,
    };
    await expect(without.domainXml(spec)).rejects.toMatchObject({
      name: 'VmmError',
      code: 'unsupported',
      message: expect.stringContaining('hvm guests cannot start here: no Xen device model'),
    });
    expect(await withDm.domainXml(spec)).toContain(`<emulator>${deviceModel}</emulator>`);
  });

  it('narrows the virt modes to what Xen reports once libvirt is reached, and takes its device model', async () => {
    const logs: string[] = [];
    const flavour = new XenFlavour({
      runtimeDir,
      log: (_level, message) => logs.push(message),
      hostPaths: { deviceModels: [missing('dm')], hvmloaders: [hvmloader] },
    });
    await flavour.afterOpen(fakeLibvirt(capabilitiesXml(['hvm', 'xen', 'xenpvh'], deviceModel)));
    expect(flavour.capabilities().virtModes).toEqual(['pv', 'pvh', 'hvm']);
    await flavour.afterOpen(fakeLibvirt(capabilitiesXml(['xen'])));
    expect(flavour.capabilities().virtModes).toEqual(['pv']);
    expect(logs.join('\n')).toContain('xen: pvh guests cannot start here');
  });

  it('refuses names Xen or vchan would misread', () => {
    const flavour = new XenFlavour({ log, runtimeDir });
    expect(flavour.nameProblem('work')).toBeUndefined();
    expect(flavour.nameProblem('sys-net.2')).toBeUndefined();
    expect(flavour.nameProblem('Domain-0')).toMatch(/dom0/);
    expect(flavour.nameProblem('12')).toMatch(/domain id/);
    expect(flavour.nameProblem('a/b')).toBeDefined();
    expect(flavour.nameProblem('')).toBeDefined();
  });
});
