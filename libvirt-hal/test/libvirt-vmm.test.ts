import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { supported, unsupported, type DomainSpec, type VmmEvent } from '@odyssey/hal';
import { Libvirt, UndefineFlags } from '@odyssey/libvirt';
import { skipReason, startDaemon, until, type TestDaemon } from '../../libvirt/test/daemon.js';
import {
  END_ON_ANY_STOP,
  LibvirtVmm,
  attrs,
  buildDomainXml,
  identityAndSize,
  textNode,
} from '../src/index.js';
import type { LibvirtFlavour } from '../src/index.js';

/**
 * A flavour for libvirt's test driver: no hypervisor, but real RPC, states, managed save and
 * lifecycle events. Like libxl, it takes no FORCE_BOOT, so `start` drops a saved image itself.
 */
const undefinedNames: string[] = [];
/** What beforeStart waits for: a start held in the middle, by a test. */
let startGate: Promise<void> = Promise.resolve();
const flavour: LibvirtFlavour = {
  capabilities: () => ({
    name: 'test',
    isolation: 'hosted-vm',
    guestImages: [],
    domainsOnClose: 'survive',
    virtModes: ['hvm'],
    pause: supported,
    suspend: supported,
    stats: supported,
    blockDevices: unsupported('test'),
    pciDevices: unsupported('test'),
    usbDevices: unsupported('test'),
    vmToVmVchan: unsupported('test'),
  }),
  nameProblem: (name) => (name.includes('/') ? 'no slashes in test domains' : undefined),
  domainXml: async (spec) =>
    buildDomainXml({
      ...attrs({ type: 'test' }),
      ...identityAndSize(spec),
      os: { type: textNode({ arch: 'x86_64' }, 'hvm') },
      ...END_ON_ANY_STOP,
    }),
  flags: { shutdown: 0, undefine: UndefineFlags.MANAGED_SAVE, forceBoot: false },
  beforeStart: () => startGate,
  afterUndefine: async (name) => void undefinedNames.push(name),
  // A driver that tells a destroy as a failure (libvirt's LXC driver can, racing its controller's end).
  stopReason: (_name, reported) => (reported === 'destroyed' ? 'failed' : reported),
};

const VM = `haltest-${process.pid}`;
const spec: DomainSpec = {
  name: VM,
  uuid: randomUUID(),
  memoryMiB: 128,
  maxMemoryMiB: 0,
  vcpus: 1,
  virtMode: 'hvm',
  volumes: [],
  debug: false,
};

const skip = skipReason();

describe.skipIf(skip)("LibvirtVmm over libvirt's test driver", () => {
  let daemon: TestDaemon;
  let vmm: LibvirtVmm;
  const events: VmmEvent[] = [];
  const waitEvent = (type: VmmEvent['type']) =>
    until(() => events.some((e) => e.type === type && e.name === VM), 10_000, `${type} event`);

  beforeAll(async () => {
    daemon = await startDaemon();
    vmm = new LibvirtVmm(flavour, {
      uri: 'test:///default',
      socketPath: daemon.socket,
      log: () => undefined,
    });
    await vmm.open();
    void (async () => {
      for await (const e of vmm.events()) events.push(e);
    })();
  }, 90_000);

  afterAll(async () => {
    await vmm?.close();
    await daemon?.stop();
  }, 60_000);

  it("refuses a name the flavour rejects, with the flavour's reason", async () => {
    await expect(vmm.define({ ...spec, name: 'a/b' })).rejects.toMatchObject({
      code: 'failed',
      message: expect.stringContaining('cannot name a test domain: no slashes'),
    });
  });

  // Upstream's pause asks is_running() first; a start in progress has not made the domain run yet.
  it('refuses to pause or suspend a halted domain, or one still starting', async () => {
    const other = { ...spec, name: `${VM}-starting`, uuid: randomUUID() };
    await vmm.define(other);
    try {
      await expect(vmm.pause(other.name)).rejects.toMatchObject({ code: 'invalid-state' });
      await expect(vmm.suspend(other.name)).rejects.toMatchObject({ code: 'invalid-state' });
      let release = (): void => undefined;
      startGate = new Promise((resolve) => (release = resolve));
      const started = vmm.start(other.name);
      await expect(vmm.pause(other.name)).rejects.toMatchObject({
        code: 'invalid-state',
        message: expect.stringContaining('still starting'),
      });
      await expect(vmm.suspend(other.name)).rejects.toMatchObject({
        code: 'invalid-state',
        message: expect.stringContaining('still starting'),
      });
      release();
      await started;
      expect((await vmm.state(other.name)).state).toBe('Running');
      await vmm.pause(other.name);
      expect((await vmm.state(other.name)).state).toBe('Paused');
      await vmm.kill(other.name);
      expect((await vmm.state(other.name)).state).toBe('Halted');
    } finally {
      startGate = Promise.resolve();
      await vmm.kill(other.name).catch(() => undefined);
      await vmm.undefine(other.name);
      undefinedNames.length = 0;
    }
  });

  it('defines, starts, pauses and unpauses, with events and ids', async () => {
    await vmm.define(spec);
    expect((await vmm.state(VM)).state).toBe('Halted');
    await vmm.start(VM);
    await waitEvent('started');
    const running = await vmm.state(VM);
    expect(running).toMatchObject({ state: 'Running', memoryKb: 128 * 1024 });
    expect(await vmm.idOf(VM)).toBe(running.xid);
    expect(await vmm.nameOf(String(running.xid))).toBe(VM);
    expect((await vmm.stats()).map((s) => s.name)).toContain(VM);
    await vmm.pause(VM);
    await waitEvent('paused');
    expect((await vmm.state(VM)).state).toBe('Paused');
    // A flavour whose info memory is not what the host pays reads virDomainMemoryStats' RSS instead.
    // The test driver runs no process, so it measures none (an empty list): nothing is paid that it sees.
    const lv = new Libvirt({ uri: 'test:///default', socketPath: daemon.socket });
    await lv.connect();
    expect(await lv.domains.memoryStats(await lv.domains.lookupByName(VM))).toEqual([]);
    await lv.close();
    const byRss = new LibvirtVmm(
      { ...flavour, hostMemory: 'rss' },
      {
        uri: 'test:///default',
        socketPath: daemon.socket,
        log: () => undefined,
      },
    );
    await byRss.open();
    try {
      expect(await byRss.state(VM)).toMatchObject({ state: 'Paused', memoryKb: 0, memoryMaxKb: 128 * 1024 });
      expect((await byRss.stats()).find((s) => s.name === VM)?.memoryKb).toBe(0);
      expect((await vmm.state(VM)).memoryKb).toBe(128 * 1024);
    } finally {
      await byRss.close();
    }
    await vmm.unpause(VM);
    await waitEvent('unpaused');
  });

  // The test driver reports a restore as a plain boot, so only states tell start and resume apart.
  it('suspends to a managed save image; start boots afresh, resume restores', async () => {
    await vmm.suspend(VM);
    await waitEvent('suspended');
    expect((await vmm.state(VM)).state).toBe('Suspended');
    await vmm.start(VM);
    expect((await vmm.state(VM)).state).toBe('Running');
    await vmm.kill(VM);
    await expect(vmm.resume(VM)).rejects.toMatchObject({ code: 'invalid-state' });
    await vmm.start(VM);
    await vmm.suspend(VM);
    await vmm.resume(VM);
    expect((await vmm.state(VM)).state).toBe('Running');
  });

  it('kills a suspended domain by discarding its saved memory: Halted, and the next start boots afresh', async () => {
    await vmm.suspend(VM);
    await waitEvent('suspended');
    events.length = 0;
    await vmm.kill(VM);
    expect((await vmm.state(VM)).state).toBe('Halted');
    expect(events).toEqual([{ type: 'stopped', name: VM, reason: 'destroyed' }]);
    await expect(vmm.resume(VM)).rejects.toMatchObject({ code: 'invalid-state' });
    await vmm.start(VM);
    expect((await vmm.state(VM)).state).toBe('Running');
  });

  it("reports the stop kill() asked for as destroyed, whatever the driver's detail", async () => {
    events.length = 0;
    await vmm.kill(VM);
    await waitEvent('stopped');
    expect(events.filter((e) => e.type === 'stopped')).toEqual([
      { type: 'stopped', name: VM, reason: 'destroyed' },
    ]);
    await vmm.start(VM);
    expect((await vmm.state(VM)).state).toBe('Running');
  });

  it('shuts down with the flavour flags, then kill finds nothing to kill', async () => {
    events.length = 0;
    await vmm.shutdown(VM, { timeoutMs: 5000 });
    await waitEvent('stopped');
    expect((await vmm.state(VM)).state).toBe('Halted');
    await expect(vmm.kill(VM)).rejects.toMatchObject({ code: 'invalid-state' });
    await expect(vmm.idOf(VM)).rejects.toMatchObject({ code: 'invalid-state' });
  });

  it('undefines and lets the flavour clean up', async () => {
    await vmm.undefine(VM);
    expect(undefinedNames).toEqual([VM]);
    expect((await vmm.state(VM)).state).toBe('Halted');
    await expect(vmm.start(VM)).rejects.toMatchObject({ code: 'no-such-domain' });
  });
});
