import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readlink, readdir, rm, rmdir, writeFile } from 'node:fs/promises';
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
const HIERARCHY = '/sys/fs/cgroup/systemd';
const noHierarchy = existsSync(`${HIERARCHY}/cgroup.procs`)
  ? undefined
  : `no name=systemd cgroup hierarchy at ${HIERARCHY}`;
if (noHierarchy) console.warn(`[odyssey-lxc-init] cgroup check SKIPPED: ${noHierarchy}`);

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

  it('refuses a domain name that is not one, changing nothing', async () => {
    for (const bad of ['', '..', 'a/b', 'x y', "a'b"]) {
      const { code, out } = await boot(bad, {});
      expect(code).toBe(1);
      expect(out).toContain('LIBVIRT_LXC_NAME is not a domain name');
    }
    expect(await readdir(join(root, 'run'))).toEqual([]);
  });

  it.skipIf(noHierarchy)(
    'enters the name=systemd cgroup dom0 made for it, in a cgroup namespace rooted there',
    async () => {
      // The host hierarchy stands in for what libvirt binds at the container's /sys/fs/cgroup/systemd.
      const name = `lxinit${process.pid}`;
      const own = join(HIERARCHY, 'odyssey', name);
      await mkdir(own, { recursive: true });
      const seen = join(root, 'seen');
      await writeFile(
        seen,
        '#!/bin/sh\necho "pid $$"\ngrep name=systemd /proc/self/cgroup\n' +
          'ls "$ODYSSEY_LXC_INIT_ROOT/sys/fs/cgroup/systemd" | grep -c -e odyssey -e cgroup.procs\n' +
          `cat "${own}/cgroup.procs"\n`,
        { mode: 0o755 },
      );
      await mkdir(join(root, 'sys/fs/cgroup/systemd'), { recursive: true });
      try {
        const { stdout } = await run(
          'unshare',
          [
            '--mount',
            '--propagation',
            'private',
            'sh',
            '-c',
            `mount --bind ${HIERARCHY} "$1/sys/fs/cgroup/systemd" && exec sh "$2"`,
            'sh',
            root,
            INIT,
          ],
          {
            env: {
              PATH: process.env['PATH'] ?? '/usr/bin:/bin',
              LIBVIRT_LXC_NAME: name,
              ODYSSEY_LXC_INIT_ROOT: root,
              ODYSSEY_LXC_INIT_EXEC: seen,
            },
          },
        );
        const [pidLine, cgroup, count, procs] = stdout.trim().split('\n');
        // Same process all along (no fork): the one in the domain's cgroup on the host.
        expect(procs).toBe(pidLine?.slice('pid '.length));
        // Its own cgroup is its namespace's root, and the hierarchy mounted there is that cgroup
        // alone: its cgroup.procs, no odyssey/ of other domains.
        expect(cgroup).toMatch(/^\d+:name=systemd:\/$/);
        expect(count).toBe('1');
      } finally {
        await rmdir(own);
      }
    },
  );
});
