import { execFile } from 'node:child_process';
import { access, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

/**
 * The Debian template's systemd generator for Xen domUs (templates/debian-12:
 * odyssey-xen-generator), run on a directory standing in for the guest's root: on Xen it puts the
 * Xen agent unit in the generator's output dir, elsewhere nothing.
 */
const TEMPLATE_ROOT = fileURLToPath(new URL('../../../templates/debian-12/rootfs/', import.meta.url));
const GENERATOR = join(TEMPLATE_ROOT, 'usr/lib/systemd/system-generators/odyssey-xen-generator');
const XEN_UNIT = 'usr/lib/odyssey/xen/odyssey-qrexec-agent.service';
const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const run = promisify(execFile);

describe('odyssey-xen-generator', () => {
  let root: string;
  let out: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'xen-generator-'));
    out = join(root, 'generator');
    await mkdir(out);
    await mkdir(join(root, 'usr/lib/odyssey/xen'), { recursive: true });
    await writeFile(join(root, XEN_UNIT), await readFile(join(TEMPLATE_ROOT, XEN_UNIT)));
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  async function generate(hypervisor?: string): Promise<string[]> {
    if (hypervisor !== undefined) {
      await mkdir(join(root, 'sys/hypervisor'), { recursive: true });
      await writeFile(join(root, 'sys/hypervisor/type'), hypervisor);
    }
    // systemd passes the normal, early and late output dirs.
    await run(GENERATOR, [out, join(root, 'early'), join(root, 'late')], {
      env: { ...process.env, ODYSSEY_XEN_GENERATOR_ROOT: root },
    });
    return readdir(out);
  }

  it('replaces the agent unit with the Xen one in a Xen domU', async () => {
    expect(await generate('xen\n')).toEqual(['odyssey-qrexec-agent.service']);
    expect(await readFile(join(out, 'odyssey-qrexec-agent.service'))).toEqual(
      await readFile(join(TEMPLATE_ROOT, XEN_UNIT)),
    );
  });

  it('writes nothing on KVM or in a container (no /sys/hypervisor/type there, or not xen)', async () => {
    expect(await generate()).toEqual([]);
    expect(await generate('kvm\n')).toEqual([]);
  });

  it("starts the agent's Xen entry point, which the build has", async () => {
    const unit = await readFile(join(TEMPLATE_ROOT, XEN_UNIT), 'utf8');
    const main = /^ExecStart=\/usr\/bin\/node \/opt\/odyssey\/(\S+)/m.exec(unit)?.[1];
    expect(main).toBe('xen-guest-main.mjs');
    await access(join(REPO, 'agent/dist/bundle', main ?? ''));
  });
});
