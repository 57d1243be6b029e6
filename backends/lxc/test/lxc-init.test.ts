import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readlink, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

/**
 * The Debian template's container init (templates/debian-12: /sbin/odyssey-lxc-init), run on a
 * directory standing in for the container's root, in a mount namespace of its own (unshare), and
 * execing a script that reports what it sees in place of systemd.
 */
const TEMPLATE_ROOT = fileURLToPath(new URL('../../../templates/debian-12/rootfs/', import.meta.url));
const INIT = join(TEMPLATE_ROOT, 'usr/sbin/odyssey-lxc-init');
const AGENT_UNIT = join(TEMPLATE_ROOT, 'usr/lib/odyssey/lxc/odyssey-qrexec-agent.service');
const run = promisify(execFile);

async function whyNot(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root (mount namespaces, bind mounts)';
  try {
    await run('unshare', ['--mount', '--propagation', 'private', 'true']);
  } catch (error) {
    return `unshare --mount does not work here: ${String(error)}`;
  }
  return undefined;
}
const skip = await whyNot();
if (skip) console.warn(`[odyssey-lxc-init] SKIPPED: ${skip}`);

describe.skipIf(skip)('odyssey-lxc-init', () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'lxc-init-'));
    await mkdir(join(root, 'usr/lib/odyssey/lxc'), { recursive: true });
    await writeFile(
      join(root, 'usr/lib/odyssey/lxc/odyssey-qrexec-agent.service'),
      await readFile(AGENT_UNIT),
    );
    await mkdir(join(root, 'home/user'), { recursive: true });
    await writeFile(join(root, 'home/user/.profile'), 'template\n');
    await mkdir(join(root, 'rw'));
    await mkdir(join(root, 'run'));
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  /**
   * Runs the init as libvirt would (LIBVIRT_LXC_NAME), with /rw a tmpfs (dom0's private mount)
   * holding `rwHome` first; returns what the execed program saw: /home's entries and whether
   * /home is a mount, after it wrote a file into /home/user.
   */
  async function boot(name: string, rwHome?: Record<string, string>): Promise<{ code: number; out: string }> {
    const seen = join(root, 'seen');
    await writeFile(
      seen,
      '#!/bin/sh\nR=$ODYSSEY_LXC_INIT_ROOT\n' +
        'mountpoint -q "$R/home" && echo "home is a mount"\n' +
        'echo "home/user: $(ls -A "$R/home/user" | tr "\\n" " ")"\n' +
        'echo written >"$R/home/user/new"\n',
      { mode: 0o755 },
    );
    const prepare = Object.entries(rwHome ?? {})
      .map(
        ([f, text]) =>
          `mkdir -p "$(dirname "$1/rw/home/${f}")" && printf '%s' '${text}' >"$1/rw/home/${f}" && `,
      )
      .join('');
    const script = rwHome ? `mount -t tmpfs odyssey-rw "$1/rw" && ${prepare}exec sh "$2"` : 'exec sh "$2"';
    try {
      const { stdout } = await run(
        'unshare',
        ['--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', root, INIT],
        {
          env: {
            PATH: process.env['PATH'] ?? '/usr/bin:/bin',
            LIBVIRT_LXC_NAME: name,
            ODYSSEY_LXC_INIT_ROOT: root,
            ODYSSEY_LXC_INIT_EXEC: seen,
          },
        },
      );
      return { code: 0, out: stdout };
    } catch (error) {
      const e = error as { code: number; stderr: string };
      return { code: e.code, out: e.stderr };
    }
  }

  it('masks the KVM-only units in /run, puts the container agent unit there, names the domain', async () => {
    const { code } = await boot('conf-debian', {});
    expect(code).toBe(0);
    const units = join(root, 'run/systemd/system');
    expect((await readdir(units)).sort()).toEqual([
      'odyssey-mount-private.service',
      'odyssey-qrexec-agent.service',
      'odyssey-swap.service',
      'systemd-remount-fs.service',
    ]);
    for (const masked of [
      'odyssey-mount-private.service',
      'odyssey-swap.service',
      'systemd-remount-fs.service',
    ])
      expect(await readlink(join(units, masked))).toBe('/dev/null');
    expect(await readFile(join(units, 'odyssey-qrexec-agent.service'), 'utf8')).toBe(
      await readFile(AGENT_UNIT, 'utf8'),
    );
    expect(await readFile(join(root, 'run/odyssey/lxc-agent.env'), 'utf8')).toBe(
      'VCHAN_DOMAIN=conf-debian\n',
    );
  });

  it("seeds a new private home/ from the template's /home and binds it at /home", async () => {
    const { code, out } = await boot('work', {});
    expect(code).toBe(0);
    expect(out).toBe('home is a mount\nhome/user: .profile \n');
    // The file written through /home is in the private volume; the template's /home is untouched.
    expect(await readdir(join(root, 'home/user'))).toEqual(['.profile']);
  });

  it('keeps a private home/ that has content as it is', async () => {
    const { code, out } = await boot('work', { 'user/kept': 'mine' });
    expect(code).toBe(0);
    expect(out).toBe('home is a mount\nhome/user: kept \n');
  });

  it('leaves /home alone without a private volume at /rw', async () => {
    const { code, out } = await boot('work');
    expect(code).toBe(0);
    expect(out).toBe('home/user: .profile \n');
  });

  /** The name=systemd hierarchy as libvirt leaves it without machined: the domain in its root, which it owns. */
  async function systemdHierarchy(ownGroup: string): Promise<string> {
    const cg = join(root, 'sys/fs/cgroup/systemd');
    await mkdir(join(cg, 'odyssey@work@earlier/init.scope'), { recursive: true });
    await mkdir(join(cg, 'odyssey@work2@running/init.scope'), { recursive: true });
    await writeFile(join(cg, 'odyssey@work2@running/init.scope/cgroup.procs'), '1\n');
    await writeFile(join(cg, 'cgroup.procs'), '');
    await mkdir(join(root, 'proc/self'), { recursive: true });
    await writeFile(join(root, 'proc/self/cgroup'), `9:name=systemd:${ownGroup}\n4:memory:/machine/x\n`);
    return cg;
  }

  it("moves pid 1 into a group of its own in the name=systemd root it was left in, removing its earlier boots'", async () => {
    const cg = await systemdHierarchy('/');
    expect((await boot('work')).code).toBe(0);
    const groups = (await readdir(cg)).filter((g) => g.startsWith('odyssey@')).sort();
    // '2' sorts before '@': the other domain's group comes first.
    expect(groups).toHaveLength(2);
    expect(groups[0]).toBe('odyssey@work2@running');
    expect(groups[1]).toMatch(/^odyssey@work@[0-9a-f-]{36}$/);
    // The init wrote its own pid ($$ of the shell that execs systemd) into its new group.
    expect(await readFile(join(cg, groups[1] ?? '', 'cgroup.procs'), 'utf8')).toMatch(/^[1-9][0-9]*\n$/);
  });

  it('leaves the cgroups alone when the domain already has a name=systemd group', async () => {
    const cg = await systemdHierarchy('/machine.slice/work.scope');
    expect((await boot('work')).code).toBe(0);
    expect((await readdir(cg)).sort()).toEqual([
      'cgroup.procs',
      'odyssey@work2@running',
      'odyssey@work@earlier',
    ]);
  });

  it('refuses a domain name that is not one, changing nothing', async () => {
    for (const bad of ['', '..', 'a/b', 'x y', "a'b"]) {
      const { code, out } = await boot(bad, {});
      expect(code).toBe(1);
      expect(out).toContain('LIBVIRT_LXC_NAME is not a domain name');
    }
    expect(await readdir(join(root, 'run'))).toEqual([]);
  });
});
