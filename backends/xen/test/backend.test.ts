import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBackend, type BackendContext } from '@odyssey/hal';
import { skipReason, startDaemon, type TestDaemon } from '../../../libvirt/test/daemon.js';
import { optionsFromEnv, XenVmm } from '../src/index.js';

const context: BackendContext = { runtimeDir: '/nonexistent', log: () => undefined };

describe('Xen backend package', () => {
  it('is what odysseyd --backend xen loads: a Xen Vmm and the libxenvchan transport', async () => {
    const backend = await loadBackend('xen', context);
    expect(backend.vmm).toBeInstanceOf(XenVmm);
    expect(backend.vmm.capabilities().name).toBe('xen');
    expect(backend.vchan?.name).toBe('xen');
    // Each daemon gets its own backend.
    expect((await loadBackend('xen', context)).vmm).not.toBe(backend.vmm);
  });

  it('names dom0 and decimal domids for vchan without asking libvirt', async () => {
    const vmm = new XenVmm({ uri: 'xen:///system', runtimeDir: '/nonexistent', log: () => undefined });
    expect(await vmm.domid('dom0')).toBe(0);
    expect(await vmm.domid('7')).toBe(7);
  });

  it('connects to xen:///system unless the environment says otherwise', () => {
    expect(optionsFromEnv({})).toEqual({ uri: 'xen:///system' });
    expect(
      optionsFromEnv({ ODYSSEY_LIBVIRT_URI: 'xen:///system?x=1', ODYSSEY_LIBVIRT_SOCKET: '/s' }),
    ).toEqual({
      uri: 'xen:///system?x=1',
      socketPath: '/s',
    });
  });
});

const skip = skipReason();

describe.skipIf(skip)('XenVmm against a libvirtd that is not running on Xen', () => {
  let daemon: TestDaemon;
  beforeAll(async () => {
    daemon = await startDaemon();
  }, 90_000);
  afterAll(async () => {
    await daemon?.stop();
  }, 60_000);

  it("fails to open with 'unavailable', naming the URI and libvirt's reason", async () => {
    const vmm = new XenVmm({
      uri: 'xen:///system',
      socketPath: daemon.socket,
      runtimeDir: '/nonexistent',
      log: () => undefined,
    });
    const error = await vmm.open().then(
      () => undefined,
      (e: unknown) => e,
    );
    await vmm.close();
    expect(error).toMatchObject({ name: 'VmmError', code: 'unavailable' });
    const message = (error as Error).message;
    console.log(`[xen] open() on a host without Xen: ${message}`);
    expect(message).toContain('xen:///system');
    expect(message).toMatch(/no connection driver available|not running in a Xen Dom0|libxenlight/i);
  });
});
