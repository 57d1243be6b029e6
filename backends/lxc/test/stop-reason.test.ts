import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LxcFlavour } from '../src/lxc-flavour.js';

/** The crash mark lies in a directory the domain owns: only a regular file of that name counts. */
describe("lxc stopReason: the init's crash mark", () => {
  let runtimeDir: string;
  let flavour: LxcFlavour;
  let mark: string;

  beforeEach(async () => {
    runtimeDir = await mkdtemp(join(tmpdir(), 'lxc-stop-reason-'));
    flavour = new LxcFlavour({ runtimeDir, log: () => undefined, libvirtdSocket: join(runtimeDir, 'none') });
    await mkdir(flavour.files.vchanDir('dom'), { recursive: true });
    mark = flavour.files.crashMark('dom');
  });
  afterEach(() => rm(runtimeDir, { recursive: true, force: true }));

  it("keeps libvirt's shutdown without a mark, and reads the mark as a crash", async () => {
    expect(flavour.stopReason('dom', 'shutdown')).toBe('shutdown');
    await writeFile(mark, '');
    expect(flavour.stopReason('dom', 'shutdown')).toBe('crashed');
    // A kill or a failure stays what libvirt said.
    expect(flavour.stopReason('dom', 'destroyed')).toBe('destroyed');
    expect(flavour.stopReason('dom', 'failed')).toBe('failed');
  });

  it('takes no directory, link or FIFO of that name for a mark, and never reads it', async () => {
    await mkdir(mark);
    expect(flavour.stopReason('dom', 'shutdown')).toBe('shutdown');
    await rm(mark, { recursive: true });
    await writeFile(join(runtimeDir, 'regular'), '');
    await symlink(join(runtimeDir, 'regular'), mark);
    expect(flavour.stopReason('dom', 'shutdown')).toBe('shutdown');
    await rm(mark);
    execFileSync('mkfifo', [mark]);
    expect(flavour.stopReason('dom', 'shutdown')).toBe('shutdown');
  });

  it("keeps libvirt's reason when the domain's dir is gone", async () => {
    await rm(flavour.files.domainDir('dom'), { recursive: true });
    expect(flavour.stopReason('dom', 'shutdown')).toBe('shutdown');
  });
});
