import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SystemdCgroups } from '../src/systemd-cgroups.js';

// libvirtd's /proc/<pid> stood in for by a directory: its mountinfo, cgroup and root/.
let proc = '';
beforeEach(async () => {
  proc = await mkdtemp(join(tmpdir(), 'odyssey-cgroups-'));
});
afterEach(async () => {
  await rm(proc, { recursive: true, force: true });
});

const CGROUP2_ONLY =
  '30 1 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n';

describe('the name=systemd cgroups of systemd domains', () => {
  it('on a host without a name=systemd hierarchy makes nothing and reclaims nothing, without failing', async () => {
    await writeFile(join(proc, 'mountinfo'), CGROUP2_ONLY);
    await writeFile(join(proc, 'cgroup'), '0::/\n');
    await mkdir(join(proc, 'root'));
    const cgroups = new SystemdCgroups(() => Promise.resolve(proc));
    await cgroups.make('work', 1_000_000_000);
    await cgroups.reclaimLibvirtd();
    await cgroups.remove('work');
    expect(await readdir(join(proc, 'root'))).toEqual([]);
  });

  it('refuses a name=systemd mount that is a subtree of its hierarchy', async () => {
    await writeFile(
      join(proc, 'mountinfo'),
      '35 30 0:29 /sub /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd\n',
    );
    await writeFile(join(proc, 'cgroup'), '1:name=systemd:/\n');
    const cgroups = new SystemdCgroups(() => Promise.resolve(proc));
    await expect(cgroups.make('work', 1_000_000_000)).rejects.toThrow(/subtree/);
  });
});
