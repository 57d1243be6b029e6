import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parsePersistValue, planBinds, refusedPath, rwPathOf } from '../src/bind-dirs-config.js';

describe('parsePersistValue', () => {
  it('takes a bare path and the file:/dir: form, a colon in the path included', () => {
    expect(parsePersistValue('/var/lib/foo')).toEqual({ path: '/var/lib/foo' });
    expect(parsePersistValue('dir:user:user:0755:/var/lib/a:b')).toEqual({
      path: '/var/lib/a:b',
      create: { kind: 'dir', owner: 'user', group: 'user', mode: 0o755 },
    });
    expect(parsePersistValue('file:root:1000:0o6_44:/etc/x')).toEqual({
      path: '/etc/x',
      create: { kind: 'file', owner: 'root', group: '1000', mode: 0o644 },
    });
  });

  it.each([
    ['var/lib/foo', 'not a path'],
    ['dir:user:user:0755', 'not a path'],
    ['link:user:user:0755:/x', "kind 'link'"],
    ['dir:-R:user:0755:/x', "owner '-R'"],
    ['dir:user:a b:0755:/x', "group 'a b'"],
    ['dir:user:user:10000:/x', "mode '10000'"],
    ['dir:user:user:-1:/x', "mode '-1'"],
    ['dir:user:user:rwx:/x', "mode 'rwx'"],
    ['dir:user:user:0755:x', 'not an absolute path'],
    ['/', 'the root'],
    ['/var/../etc', 'an empty, . or .. component'],
    ['/var//lib', 'an empty, . or .. component'],
    ['/var/lib/', 'an empty, . or .. component'],
    ['/var/lib\nfoo', 'a control character'],
    ['/var/lib\\x0afoo', 'backslash'],
    ['/rw/config', 'on the private volume'],
    ['/rw', 'on the private volume'],
  ])('refuses %j', (value, why) => {
    const parsed = parsePersistValue(value);
    expect(parsed).toHaveProperty('refused');
    expect((parsed as { refused: string }).refused).toContain(why);
  });

  it('leaves /rwx and paths with dots inside names alone', () => {
    expect(refusedPath('/rwx/.hidden/a..b')).toBeUndefined();
  });
});

describe('rwPathOf', () => {
  it("keeps /home's and /usr/local's copies in their volumes' trees, the rest in /rw/bind-dirs", () => {
    expect(rwPathOf('/home/user/Downloads')).toBe('/rw/home/user/Downloads');
    expect(rwPathOf('/usr/local')).toBe('/rw/usrlocal');
    expect(rwPathOf('/usr/local/lib/x')).toBe('/rw/usrlocal/lib/x');
    expect(rwPathOf('/usr/localx')).toBe('/rw/bind-dirs/usr/localx');
    expect(rwPathOf('/var/spool/cron')).toBe('/rw/bind-dirs/var/spool/cron');
  });
});

describe('planBinds', () => {
  const persist = [
    ['a', 'dir:user:user:0755:/var/lib/a'],
    ['b', '/var/spool/cron'],
    ['bad', 'dir:user:user:0755:/var/../etc'],
    ['usr', '/usr/local'],
  ] as const;

  it('ignores /persist/ while the custom-persist service is off, and keeps /home', () => {
    expect(planBinds(['/var/spool/cron', '/home', 'rel'], persist, false)).toEqual({
      creates: [],
      binds: ['/var/spool/cron'],
      volatileHome: false,
      refused: [
        "bind-dirs config path '/home': the whole of /home",
        "bind-dirs config path 'rel': not an absolute path",
      ],
    });
  });

  it('with custom-persist: config paths first, each path once, /home volatile unless listed', () => {
    const plan = planBinds(['/var/spool/cron'], persist, true);
    expect(plan.binds).toEqual(['/var/spool/cron', '/var/lib/a', '/usr/local']);
    expect(plan.creates).toEqual([
      { path: '/var/lib/a', create: { kind: 'dir', owner: 'user', group: 'user', mode: 0o755 } },
    ]);
    expect(plan.volatileHome).toBe(true);
    expect(plan.refused).toEqual([
      "custom-persist bad 'dir:user:user:0755:/var/../etc': an empty, . or .. component",
    ]);
    expect(planBinds([], [...persist, ['home', '/home']], true).volatileHome).toBe(false);
  });
});

/**
 * bindDirs on a real tree with real bind mounts, in a mount namespace of its own (unshare), so
 * nothing is left mounted: after each run the tree shows what reached the private volume's copy.
 */
const built = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'bind-dirs.js');
const unavailable =
  process.getuid?.() !== 0
    ? 'needs root (bind mounts)'
    : spawnSync('unshare', ['--mount', 'true']).status !== 0
      ? 'needs unshare --mount'
      : !existsSync(built)
        ? `needs ${built} (npx tsc -b)`
        : undefined;

describe.skipIf(unavailable !== undefined)(`bindDirs in a mount namespace ${unavailable ?? ''}`, () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'bind-dirs-'));
    await mkdir(join(root, 'rw'), { recursive: true });
    await mkdir(join(root, 'var/lib/pkg'), { recursive: true });
    await writeFile(join(root, 'var/lib/pkg/state'), 'from the image\n');
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  /**
   * One boot: `before` (a shell script, $R the root: what mounts the boot made before the agent), bindDirs
   * with this QubesDB, then `after` while the binds hold; bindDirs' log.
   */
  function boot(db: Record<string, string>, after: string, before = 'true'): string {
    const script = `
      const { bindDirs } = await import(${JSON.stringify(built)});
      const [root, db] = [process.argv[1], JSON.parse(process.argv[2])];
      const qdb = {
        ready: Promise.resolve(),
        read: (p) => db[p],
        entries: (prefix) => Object.entries(db).filter(([k]) => k.startsWith(prefix)).sort(),
      };
      await bindDirs(qdb, (m) => console.log(m), { root, waitMs: 1000 });`;
    const result = spawnSync(
      'unshare',
      [
        '--mount',
        '--propagation',
        'private',
        'sh',
        '-c',
        // /run is a tmpfs: each boot starts without the last one's mark.
        `R="$1" && rm -rf "$R/run" && { ${before}; } && node --input-type=module -e "$0" "$1" "$2" && { ${after}; }`,
        script,
        root,
        JSON.stringify(db),
      ],
      { encoding: 'utf8' },
    );
    if (result.status !== 0)
      throw new Error(`boot failed (${result.status}): ${result.stdout}${result.stderr}`);
    return result.stdout;
  }
  const appvm = { '/qubes-vm-persistence': 'rw-only', '/qubes-service/custom-persist': '1' };

  it('keeps a custom-persist dir: across boots, made with its owner and mode, and nothing else', async () => {
    const db = {
      ...appvm,
      '/persist/x': 'dir:1000:1000:0750:/var/lib/check',
      '/persist/pkg': '/var/lib/pkg',
    };
    const log = boot(db, 'echo kept >"$R/var/lib/check/f" && echo changed >"$R/var/lib/pkg/state"');
    expect(log).toContain('bind-dirs: /var/lib/check: bound from /rw/bind-dirs/var/lib/check');
    const copy = await stat(join(root, 'rw/bind-dirs/var/lib/check'));
    expect([copy.uid, copy.gid, copy.mode & 0o7777]).toEqual([1000, 1000, 0o750]);
    // The root image got a mount point like the copy; what was written went to the copy.
    expect((await stat(join(root, 'var/lib/check'))).uid).toBe(1000);
    expect(await readFile(join(root, 'rw/bind-dirs/var/lib/check/f'), 'utf8')).toBe('kept\n');
    expect(existsSync(join(root, 'var/lib/check/f'))).toBe(false);
    // A path already in the image: its copy seeded from it, then changed through the bind.
    expect(await readFile(join(root, 'rw/bind-dirs/var/lib/pkg/state'), 'utf8')).toBe('changed\n');
    expect(await readFile(join(root, 'var/lib/pkg/state'), 'utf8')).toBe('from the image\n');
    // The next boot binds the kept copy again and does not seed it anew.
    expect(boot(db, 'cat "$R/var/lib/check/f" "$R/var/lib/pkg/state"')).toContain('kept\nchanged\n');
  });

  it('reads the config files (bash arrays), and /rw/config only without custom-persist', async () => {
    await mkdir(join(root, 'etc/qubes-bind-dirs.d'), { recursive: true });
    await writeFile(
      join(root, 'etc/qubes-bind-dirs.d/30_pkg.conf'),
      "echo said\nbinds+=( '/var/lib/pkg' )\n",
    );
    await mkdir(join(root, 'rw/config/qubes-bind-dirs.d'), { recursive: true });
    await writeFile(join(root, 'rw/config/qubes-bind-dirs.d/50_own.conf'), 'binds+=( /var/lib/own )\n');
    await writeFile(join(root, 'rw/config/qubes-bind-dirs.d/60_broken.conf'), 'binds+=( \n');
    await mkdir(join(root, 'var/lib/own'));
    const plain = boot({ '/qubes-vm-persistence': 'rw-only' }, 'true');
    expect(plain).toContain('/var/lib/pkg: bound from');
    expect(plain).toContain('/var/lib/own: bound from');
    expect(plain).toMatch(/skipped .*60_broken\.conf/);
    expect(plain).toContain('bind-dirs: said\n');
    await rm(join(root, 'rw/bind-dirs'), { recursive: true });
    const minimal = boot(appvm, 'true');
    expect(minimal).toContain('/var/lib/pkg: bound from');
    expect(minimal).not.toContain('/var/lib/own');
  });

  it("leaves /home the root image's with custom-persist, unless /home is listed", async () => {
    await mkdir(join(root, 'rw/home'), { recursive: true });
    await mkdir(join(root, 'home'));
    const bindHome = 'mount --bind "$R/rw/home" "$R/home"';
    boot(appvm, 'echo dropped >"$R/home/f"', bindHome);
    expect(existsSync(join(root, 'rw/home/f'))).toBe(false);
    expect(await readFile(join(root, 'home/f'), 'utf8')).toBe('dropped\n');
    boot({ ...appvm, '/persist/home': '/home' }, 'echo kept >"$R/home/g"', bindHome);
    expect(await readFile(join(root, 'rw/home/g'), 'utf8')).toBe('kept\n');
    boot({ '/qubes-vm-persistence': 'rw-only' }, 'echo kept >"$R/home/h"', bindHome);
    expect(await readFile(join(root, 'rw/home/h'), 'utf8')).toBe('kept\n');
  });

  it('binds once per boot: an agent restarted in the same boot stacks no mount', () => {
    const db = { ...appvm, '/persist/pkg': '/var/lib/pkg' };
    const again = `node --input-type=module -e "$0" "$1" "$2"; grep -c " $R/var/lib/pkg " /proc/self/mountinfo`;
    expect(boot(db, again)).toMatch(/bind-dirs: bound already in this boot\n1\n$/);
  });

  it('binds nothing in a qube whose root persists', () => {
    expect(boot({ '/qubes-vm-persistence': 'full', '/persist/pkg': '/var/lib/pkg' }, 'true')).toBe('');
    expect(existsSync(join(root, 'rw/bind-dirs'))).toBe(false);
  });

  it('refuses a copy reached through a symbolic link on the private volume', async () => {
    await mkdir(join(root, 'rw/bind-dirs/var'), { recursive: true });
    await mkdir(join(root, 'elsewhere'));
    await symlink(join(root, 'elsewhere'), join(root, 'rw/bind-dirs/var/lib'));
    const log = boot({ ...appvm, '/persist/pkg': '/var/lib/pkg' }, 'echo x >"$R/var/lib/pkg/state"');
    expect(log).toContain('cannot bind /var/lib/pkg: /rw/bind-dirs/var/lib is a symbolic link');
    expect(await readFile(join(root, 'var/lib/pkg/state'), 'utf8')).toBe('x\n');
    expect((await lstat(join(root, 'rw/bind-dirs/var/lib'))).isSymbolicLink()).toBe(true);
    expect(existsSync(join(root, 'elsewhere/pkg'))).toBe(false);
  });
});
