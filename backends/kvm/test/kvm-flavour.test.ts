import { describe, expect, it } from 'vitest';
import { KvmVmm } from '../src/kvm-vmm.js';

describe('KVM flavour', () => {
  it('refuses domain names that cannot name a runtime directory', async () => {
    const vmm = new KvmVmm({ uri: 'qemu:///system', runtimeDir: '/nonexistent', log: () => undefined });
    const spec = {
      uuid: '',
      memoryMiB: 1,
      maxMemoryMiB: 0,
      vcpus: 1,
      virtMode: 'hvm' as const,
      volumes: [],
      debug: false,
    };
    for (const name of ['../etc', 'a/b', '..', '']) {
      await expect(vmm.define({ ...spec, name })).rejects.toMatchObject({ code: 'failed' });
    }
  });
});
