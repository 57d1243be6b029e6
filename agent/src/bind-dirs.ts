import { execFile } from 'node:child_process';
import type { Stats } from 'node:fs';
import { chmod, chown, lstat, mkdir, readdir, realpath, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import {
  PERSISTENT_HOME,
  planBinds,
  refusedPath,
  rwPathOf,
  type BindPlan,
  type PersistEntry,
} from './bind-dirs-config.js';
import { qubesDbArrived } from './qubesdb-arrival.js';

const run = promisify(execFile);

/** Upstream's config directories, read in this order; the last is the qube's own. */
const CONFIG_DIRS = ['/usr/lib/qubes-bind-dirs.d', '/etc/qubes-bind-dirs.d'];
const OWN_CONFIG_DIR = '/rw/config/qubes-bind-dirs.d';
/** Binding twice stacks mounts: an agent restarted in the same boot finds this and binds nothing. */
const DONE_MARK = '/run/odyssey/bind-dirs.done';

/**
 * Sources each config file as upstream does (they are bash, `binds+=( ... )`, and may hold any
 * code), in bash, and prints the resulting array NUL-separated; what a file prints goes to the
 * log. A file bash cannot parse is skipped, where upstream's `bash -e` would stop binding anything.
 */
const SOURCE_CONFIGS =
  'binds=(); for f; do if bash -n "$f"; then . "$f" >&2; else echo "skipped $f: not bash" >&2; fi; done; ' +
  '(( ${#binds[@]} )) && printf "%s\\0" "${binds[@]}"; exit 0';

/** What bindDirs needs of the domain's QubesDB daemon. */
export interface BindDirsSource {
  readonly ready: Promise<void>;
  read(path: string): string | undefined;
  entries(prefix: string): readonly (readonly [string, string])[];
}

export interface BindDirsOptions {
  /** Where the guest's / is; '' in a guest, a directory in the tests. */
  readonly root?: string;
  readonly waitMs?: number;
}

async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  return lstat(path).catch(() => undefined);
}

/**
 * The paths of the config files, in upstream's order: each directory's `*.conf` in byte order
 * (its glob's, in the C locale systemd runs it in).
 */
async function configFiles(root: string, customPersist: boolean): Promise<string[]> {
  const dirs = customPersist ? CONFIG_DIRS : [...CONFIG_DIRS, OWN_CONFIG_DIR];
  const files: string[] = [];
  for (const dir of dirs) {
    const names = await readdir(join(root, dir)).catch(() => []);
    files.push(
      ...names
        .filter((name) => name.endsWith('.conf'))
        .sort()
        .map((name) => join(root, dir, name)),
    );
  }
  return files;
}

async function configPaths(
  root: string,
  customPersist: boolean,
  log: (m: string) => void,
): Promise<string[]> {
  const files = await configFiles(root, customPersist);
  if (files.length === 0) return [];
  const { stdout, stderr } = await run('bash', ['-c', SOURCE_CONFIGS, 'bind-dirs', ...files], {
    encoding: 'utf8',
  });
  for (const line of stderr.split('\n').filter(Boolean)) log(line);
  return stdout.split('\0').filter(Boolean);
}

/**
 * Refuses a copy on the private volume reached through a symbolic link: every existing component
 * from /rw down to the copy itself must be what it is. The volume is the qube's own and outlives
 * a boot, so a link planted there in one boot could otherwise send a bind anywhere in the next.
 */
async function checkNoLinks(root: string, rw: string): Promise<void> {
  const parts = rw.split('/').filter(Boolean);
  for (let i = 1; i <= parts.length; i++) {
    const stats = await lstatOrUndefined(join(root, '/', ...parts.slice(0, i)));
    if (stats === undefined) return;
    if (stats.isSymbolicLink()) throw new Error(`/${parts.slice(0, i).join('/')} is a symbolic link`);
  }
}

/** Creates the missing directories down to `dir`, root's (no user may swap one for a link). */
async function mkdirs(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
}

/** custom-persist's `file:` and `dir:`: an empty one with its owner and mode when neither copy exists. */
async function createEntry(root: string, entry: PersistEntry): Promise<void> {
  const create = entry.create;
  if (!create) return;
  const rw = rwPathOf(entry.path);
  if ((await lstatOrUndefined(join(root, entry.path))) || (await lstatOrUndefined(join(root, rw)))) return;
  await checkNoLinks(root, rw);
  const target = join(root, rw);
  await mkdirs(create.kind === 'dir' ? target : dirname(target));
  if (create.kind === 'file') await writeFile(target, '', { flag: 'wx' });
  await run('chown', ['--no-dereference', '--', `${create.owner}:${create.group}`, target]);
  await chmod(target, create.mode);
}

/** Where a path in the root image leads: itself, or what its links resolve to (upstream follows them). */
async function resolveInRoot(root: string, path: string): Promise<string> {
  if (!(await lstatOrUndefined(join(root, path)))?.isSymbolicLink()) return path;
  const real = await realpath(join(root, path));
  const inRoot = root === '' ? real : real.startsWith(`${root}/`) ? real.slice(root.length) : '';
  const why = refusedPath(inRoot);
  if (why) throw new Error(`${path} is a link to ${real}: ${why}`);
  return inRoot;
}

/**
 * One path of upstream's bind_dirs: its copy on the private volume made from the root image's on
 * first use (or the root image's made, empty, for a copy that exists alone), then bound onto it.
 * Returns what was done, or throws why not.
 */
async function bindOne(root: string, configured: string): Promise<string> {
  const path = await resolveInRoot(root, configured);
  const rw = rwPathOf(path);
  await checkNoLinks(root, rw);
  const ro = join(root, path);
  const copy = await lstatOrUndefined(join(root, rw));
  const original = await lstatOrUndefined(ro);
  if (copy?.isDirectory() || copy?.isFile()) {
    if (original === undefined) {
      // The root image lacks it (a template without the package): a mount point like the copy.
      if (copy.isDirectory()) await mkdirs(ro);
      else {
        await mkdirs(dirname(ro));
        await writeFile(ro, '', { flag: 'wx' });
      }
      await chown(ro, copy.uid, copy.gid);
    }
  } else if (copy !== undefined) {
    throw new Error(`${rw} is neither a file nor a directory`);
  } else if (original?.isDirectory() || original?.isFile()) {
    await mkdirs(dirname(join(root, rw)));
    await checkNoLinks(root, rw);
    await run('cp', ['--archive', '--no-target-directory', '--', ro, join(root, rw)]);
  } else {
    return `${path}: neither in the root image nor in ${rw}, not bound`;
  }
  // Nothing of the qube runs yet: the checked path is still the one bound.
  await checkNoLinks(root, rw);
  await run('mount', ['--bind', '--', join(root, rw), ro]);
  return `${path}: bound from ${rw}`;
}

/** Carries a plan out: each failure is logged and the next path goes on, as upstream's loop does. */
export async function applyBindPlan(plan: BindPlan, log: (m: string) => void, root = ''): Promise<void> {
  for (const why of plan.refused) log(`refused ${why}`);
  if (plan.volatileHome) {
    // custom-persist without /home: the root image's /home, which a start of the qube reverts.
    const home = join(root, PERSISTENT_HOME);
    const bound = await run('mountpoint', ['-q', '--', home]).then(
      () => true,
      () => false,
    );
    if (bound)
      await run('umount', ['--', home]).then(
        () => log('custom-persist without /home: /home is not the private volume'),
        (error: Error) => log(`cannot unbind /home: ${error.message}`),
      );
  }
  for (const entry of plan.creates) {
    await createEntry(root, entry).catch((error: Error) =>
      log(`cannot create ${entry.path}: ${error.message}`),
    );
  }
  for (const path of plan.binds) {
    await bindOne(root, path).then(log, (error: Error) => log(`cannot bind ${path}: ${error.message}`));
  }
}

/**
 * `--bind-dirs`: upstream's bind-dirs, run by the agent once QubesDB has arrived and before it
 * serves a call (upstream runs it before sysinit.target, its QubesDB daemon being a service of its
 * own; ours is the agent's). A qube whose root persists (QubesDB `/qubes-vm-persistence` full: a
 * TemplateVM, a StandaloneVM) binds nothing, as upstream's. Bounded like nameFromQubesDb; failures
 * are logged, never thrown.
 */
export async function bindDirs(
  qubesDb: BindDirsSource,
  agentLog: (message: string) => void,
  options: BindDirsOptions = {},
): Promise<void> {
  const log = (message: string): void => agentLog(`bind-dirs: ${message}`);
  const root = options.root ?? '';
  const synced = await qubesDbArrived(qubesDb.ready, options.waitMs);
  if (!synced) return log('no QubesDB: nothing bound');
  if (qubesDb.read('/qubes-vm-persistence') === 'full') return;
  const mark = join(root, DONE_MARK);
  if (await lstatOrUndefined(mark)) return log('bound already in this boot');
  try {
    const customPersist = qubesDb.read('/qubes-service/custom-persist') === '1';
    const config = await configPaths(root, customPersist, log);
    await applyBindPlan(planBinds(config, qubesDb.entries('/persist/'), customPersist), log, root);
    await mkdirs(dirname(mark));
    await writeFile(mark, '');
  } catch (error) {
    log((error as Error).message);
  }
}
