import { closeSync, constants, fstatSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
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
/** A policy file over the size a load accepts; read no further than the limit. */
export class PolicyFileTooLarge extends Error {
  constructor(
    readonly file: string,
    readonly limit: number,
  ) {
    super(`file too large: ${file} (over ${limit} bytes)`);
    this.name = 'PolicyFileTooLarge';
  }
}

/** Bytes that are not UTF-8: refused rather than read with replacement characters that could shift a rule. */
export class PolicyFileNotText extends Error {
  constructor(readonly file: string) {
    super(`not valid UTF-8: ${file}`);
    this.name = 'PolicyFileNotText';
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function decode(file: string, bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new PolicyFileNotText(file);
  }
}

export interface PolicyFiles {
  /**
   * Contents of a regular file, or undefined when the path is not one.
   * Throws PolicyFileTooLarge past `maxBytes` and PolicyFileNotText for bytes that are not UTF-8.
   */
  readFile(file: string, maxBytes: number): string | undefined;
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

/** What Python's Path.is_file()/is_dir() answer False to, as upstream checks includes with them. */
function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP';
}

/** The real file system. I/O errors other than "does not exist" propagate (they are not syntax errors). */
export const nodePolicyFiles: PolicyFiles = {
  readFile(file, maxBytes) {
    if (!statOrNull(file)?.isFile()) return undefined;
    // Non-blocking: a FIFO swapped in after the stat must not hang the load.
    const fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      // The file may have been replaced since the stat: what counts is what this descriptor reads.
      const st = fstatSync(fd);
      if (!st.isFile()) return undefined;
      const chunks: Buffer[] = [];
      let length = 0;
      for (;;) {
        const chunk = Buffer.allocUnsafe(Math.min(Math.max(st.size + 1, 4096), maxBytes + 1 - length));
        const n = readSync(fd, chunk, 0, chunk.length, null);
        if (n === 0) break;
        chunks.push(chunk.subarray(0, n));
        length += n;
        if (length > maxBytes) throw new PolicyFileTooLarge(file, maxBytes);
      }
      return decode(file, Buffer.concat(chunks, length));
    } finally {
      closeSync(fd);
    }
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
    readFile(file, maxBytes) {
      const text = files.get(path.posix.normalize(file));
      if (text !== undefined && Buffer.byteLength(text) > maxBytes)
        throw new PolicyFileTooLarge(file, maxBytes);
      return text;
    },
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
