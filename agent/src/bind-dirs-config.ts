/**
 * What upstream's bind-dirs (qubes-core-agent-linux, vm-systemd/bind-dirs.sh) binds, as data: the
 * paths named by the bind-dirs config files and by custom-persist's QubesDB `/persist/` entries,
 * each checked, and where each is kept on the private volume. bind-dirs.ts does the binding.
 */

/** The file or directory a `file:`/`dir:` custom-persist entry creates when neither copy exists. */
export interface PersistCreate {
  readonly kind: 'file' | 'dir';
  readonly owner: string;
  readonly group: string;
  readonly mode: number;
}

/** One `/persist/<key>` value: a bare path, or `file|dir:owner:group:mode:/path`. */
export interface PersistEntry {
  readonly path: string;
  readonly create?: PersistCreate;
}

/** The two paths custom-persist names to keep them whole (upstream's mount-dirs.sh), never bound. */
export const PERSISTENT_HOME = '/home';
export const PERSISTENT_USR_LOCAL = '/usr/local';

const RW = '/rw';
const RW_BIND_DIRS = '/rw/bind-dirs';

/** A user or group name chown takes (a name or a number), and never an option. */
const ACCOUNT = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?$/;
/** dom0 checks the mode with Python's int(mode, 8) (core/src/model/custom-persist.ts): the same grammar. */
const PY_OCTAL = /^\s*([+-]?)(?:0[oO]_?)?([0-7](?:_?[0-7])*)\s*$/;

/**
 * Why a path may not be bound, or undefined when it may. Upstream only asks for an absolute path;
 * here a path is also one way of writing it (no `.`, `..` or empty component), has no control
 * character or backslash (what qubesdb-multiread would have printed escaped), and is neither `/`
 * nor on the private volume itself, which the bind's own copy lives in.
 */
export function refusedPath(path: string): string | undefined {
  if (!path.startsWith('/')) return 'not an absolute path';
  if (path === '/') return 'the root';
  if (/[\x00-\x1f\x7f\\]/.test(path)) return 'a control character or backslash in it';
  if (
    path
      .slice(1)
      .split('/')
      .some((part) => part === '' || part === '.' || part === '..')
  )
    return 'an empty, . or .. component';
  if (path === RW || path.startsWith(`${RW}/`)) return 'on the private volume';
  return undefined;
}

/**
 * Where the private volume keeps the copy of `path` (upstream's rw_from_ro): under /home in the
 * qube's home volume tree, under /usr/local in /rw/usrlocal, anything else below /rw/bind-dirs.
 */
export function rwPathOf(path: string): string {
  if (path.startsWith(`${PERSISTENT_HOME}/`)) return `${RW}${path}`;
  if (path === PERSISTENT_USR_LOCAL) return `${RW}/usrlocal`;
  if (path.startsWith(`${PERSISTENT_USR_LOCAL}/`))
    return `${RW}/usrlocal/${path.slice('/usr/local/'.length)}`;
  return `${RW_BIND_DIRS}${path}`;
}

function parseMode(text: string): number | undefined {
  const match = PY_OCTAL.exec(text);
  if (!match || match[1] === '-') return undefined;
  const mode = parseInt((match[2] ?? '').replace(/_/g, ''), 8);
  return mode <= 0o7777 ? mode : undefined;
}

/** A `/persist/<key>` value, or why it is refused (its path checked by refusedPath too). */
export function parsePersistValue(value: string): PersistEntry | { readonly refused: string } {
  if (value.startsWith('/')) {
    const why = refusedPath(value);
    return why ? { refused: why } : { path: value };
  }
  const fields = value.split(':');
  if (fields.length < 5) return { refused: 'not a path nor kind:owner:group:mode:path' };
  const [kind = '', owner = '', group = '', modeText = ''] = fields;
  const path = fields.slice(4).join(':');
  if (kind !== 'file' && kind !== 'dir') return { refused: `kind '${kind}' is neither file nor dir` };
  if (!ACCOUNT.test(owner)) return { refused: `owner '${owner}' is not a user name` };
  if (!ACCOUNT.test(group)) return { refused: `group '${group}' is not a group name` };
  const mode = parseMode(modeText);
  if (mode === undefined) return { refused: `mode '${modeText}' is not an octal mode` };
  const why = refusedPath(path);
  if (why) return { refused: why };
  return { path, create: { kind, owner, group, mode } };
}

/** What a boot binds, decided from its inputs before anything is touched. */
export interface BindPlan {
  /** Entries to create on the private volume first (custom-persist's `file:` and `dir:`). */
  readonly creates: readonly PersistEntry[];
  /** Paths to bind, in order, each once. */
  readonly binds: readonly string[];
  /** custom-persist without `/home`: /home is the root image's, dropped at shutdown. */
  readonly volatileHome: boolean;
  /** Why each refused input was refused, for the log. */
  readonly refused: readonly string[];
}

/**
 * Upstream's order: the config files' paths, then custom-persist's entries (only when the
 * custom-persist service is on, when the qube's own /rw/config files are not read at all). `/home`
 * and `/usr/local` are whole volumes there: /home stays bound when custom-persist lists it and
 * /usr/local is bound from /rw/usrlocal.
 */
export function planBinds(
  configPaths: readonly string[],
  persist: readonly (readonly [key: string, value: string])[],
  customPersist: boolean,
): BindPlan {
  const creates: PersistEntry[] = [];
  const binds: string[] = [];
  const refused: string[] = [];
  let keepHome = !customPersist;
  const add = (path: string): void => {
    if (!binds.includes(path)) binds.push(path);
  };
  for (const path of configPaths) {
    const why = refusedPath(path) ?? (path === PERSISTENT_HOME ? 'the whole of /home' : undefined);
    if (why) refused.push(`bind-dirs config path '${path}': ${why}`);
    else add(path);
  }
  if (customPersist) {
    for (const [key, value] of persist) {
      const entry = parsePersistValue(value);
      if ('refused' in entry) {
        refused.push(`custom-persist ${key} '${value}': ${entry.refused}`);
        continue;
      }
      if (entry.path === PERSISTENT_HOME) {
        keepHome = true;
        continue;
      }
      if (entry.create) creates.push(entry);
      add(entry.path);
    }
  }
  return { creates, binds, volatileHome: !keepHome, refused };
}
