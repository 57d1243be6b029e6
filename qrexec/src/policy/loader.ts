import { AccessDenied, PolicySyntaxError } from './errors.js';
import { Policy, type PolicyState } from './evaluate.js';
import { memoryPolicyFiles, nodePolicyFiles, type PolicyFiles } from './files.js';
import { PolicyParser } from './parser.js';

/** Runtime policy first: a file there shadows the same name in /etc. */
export const DEFAULT_POLICY_DIRS: readonly string[] = ['/run/qubes/policy.d', '/etc/qubes/policy.d'];
export const DEFAULT_LEGACY_DIR = '/etc/qubes-rpc/policy';

export interface LoadOptions {
  /** Directories of `*.policy` files, merged by basename (earlier wins). A missing directory counts as empty. */
  readonly dirs?: readonly string[];
  /** What `!compat-4.0` reads. A missing directory counts as empty. */
  readonly legacyDir?: string;
  readonly files?: PolicyFiles;
}

export type LoadResult = PolicyState & {
  /** Every file and directory the load looked at, including ones that did not exist. */
  readonly dependencies: { readonly files: readonly string[]; readonly dirs: readonly string[] };
};

/**
 * Loads the policy directories. Never throws: a syntax error, a bad file
 * name, an unreadable, missing, too large or not UTF-8 file, an include loop,
 * includes nested too deep or a load over its budget (POLICY_LIMITS) is
 * returned as `error`, and a caller must then deny every call.
 */
export function loadPolicy(options: LoadOptions = {}): LoadResult {
  const files = options.files ?? nodePolicyFiles;
  const parser = new PolicyParser({ files, legacyDir: options.legacyDir ?? DEFAULT_LEGACY_DIR });
  const dependencies = () => ({ files: [...parser.filesSeen], dirs: [...parser.dirsSeen] });
  try {
    parser.loadDirs(options.dirs ?? DEFAULT_POLICY_DIRS);
    return { policy: new Policy(parser.rules), error: null, dependencies: dependencies() };
  } catch (err) {
    return { policy: null, error: asAccessDenied(err), dependencies: dependencies() };
  }
}

/**
 * Policy problems arrive as AccessDenied with their file and line; anything
 * else is a fault of ours, and still only denies: a load runs in a file
 * watcher's callback, where an exception would take the daemon down.
 */
function asAccessDenied(err: unknown): AccessDenied {
  if (err instanceof AccessDenied) return err;
  return new AccessDenied(`failed to load policy: ${err instanceof Error ? err.message : String(err)}`);
}

export interface TextPolicyOptions {
  /** Legacy per-service files for `!compat-4.0`, by file name. */
  readonly legacy?: Readonly<Record<string, string>>;
}

const LEGACY_MEMORY_DIR = '/legacy';

/**
 * Parses policy held in memory: either one text (loaded as `__main__`) or a
 * tree of relative paths that must contain `__main__`, which may `!include`
 * the others. Throws PolicySyntaxError. Meant for tests and for checking a
 * proposed file before writing it.
 */
export function parsePolicyText(
  main: string | Readonly<Record<string, string>>,
  options: TextPolicyOptions = {},
): Policy {
  const tree: Record<string, string> = typeof main === 'string' ? { __main__: main } : { ...main };
  if (tree['__main__'] === undefined)
    throw new PolicySyntaxError({ file: '__main__', line: null }, 'no __main__ file');
  for (const [name, text] of Object.entries(options.legacy ?? {}))
    tree[`${LEGACY_MEMORY_DIR}/${name}`] = text;
  const parser = new PolicyParser({ files: memoryPolicyFiles(tree), legacyDir: LEGACY_MEMORY_DIR });
  parser.loadFile('__main__', '.', null);
  return new Policy(parser.rules);
}
