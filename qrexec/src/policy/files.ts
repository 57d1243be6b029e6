import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

export interface DirEntry {
  readonly name: string;
  readonly isFile: boolean;
}

/**
 * The file access the policy parser needs. Reads are synchronous on purpose:
 * a policy tree is a handful of small files, it is loaded at startup and on
 * change, and a synchronous load can never interleave with an evaluation.
 */
export interface PolicyFiles {
  /** Contents of a regular file, or undefined when the path is not one. */
  readFile(file: string): string | undefined;
  /** Entries of a directory, or undefined when the path is not a directory. */
  listDir(dir: string): DirEntry[] | undefined;
  resolve(base: string, relative: string): string;
  dirname(file: string): string;
  basename(file: string): string;
}

function statOrNull(p: string) {
  try {
    return statSync(p);
  } catch (err) {
    if (isMissing(err)) return null;
    throw err;
  }
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** The real file system. I/O errors other than "does not exist" propagate (they are not syntax errors). */
export const nodePolicyFiles: PolicyFiles = {
  readFile(file) {
    if (!statOrNull(file)?.isFile()) return undefined;
    return readFileSync(file, 'utf8');
  },
  listDir(dir) {
    if (!statOrNull(dir)?.isDirectory()) return undefined;
    // stat (not lstat) so that symlinks to regular files count, as in upstream's Path.is_file().
    return readdirSync(dir).map((name) => ({
      name,
      isFile: statOrNull(path.join(dir, name))?.isFile() ?? false,
    }));
  },
  resolve: (base, relative) => path.resolve(base, relative),
  dirname: (file) => path.dirname(file),
  basename: (file) => path.basename(file),
};

/**
 * An in-memory tree keyed by POSIX path, for tests and for validating
 * proposed policy text before it is written.
 */
export function memoryPolicyFiles(tree: Readonly<Record<string, string>>): PolicyFiles {
  const files = new Map(Object.entries(tree).map(([k, v]) => [path.posix.normalize(k), v]));
  return {
    readFile: (file) => files.get(path.posix.normalize(file)),
    listDir(dir) {
      const prefix = dir === '' || dir === '.' ? '' : `${path.posix.normalize(dir).replace(/\/$/, '')}/`;
      const entries = new Map<string, boolean>();
      for (const key of files.keys()) {
        if (!key.startsWith(prefix)) continue;
        const rest = key.slice(prefix.length);
        const slash = rest.indexOf('/');
        entries.set(slash < 0 ? rest : rest.slice(0, slash), slash < 0);
      }
      if (entries.size === 0) return undefined;
      return [...entries].map(([name, isFile]) => ({ name, isFile }));
    },
    resolve: (base, relative) =>
      path.posix.normalize(path.posix.isAbsolute(relative) ? relative : path.posix.join(base, relative)),
    dirname: (file) => path.posix.dirname(file),
    basename: (file) => path.posix.basename(file),
  };
}
