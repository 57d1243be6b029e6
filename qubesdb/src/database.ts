import { QubesDbError } from './errors.js';
import { isDirPath, isKeyPath, isValidPath, isValidValue } from './path.js';
import { QDB_MAX_DATA } from './protocol.js';

/** A change to the database; `origin` says who made it, so a connection does not echo its own changes back. */
export interface QubesDbChange {
  readonly kind: 'write' | 'rm';
  /** The key written, or the path removed (a directory path ends with '/'). */
  readonly path: string;
  /** The new value of a write. */
  readonly value?: Buffer;
  readonly origin: unknown;
}

export type WatchListener = (path: string) => void;

interface Watch {
  readonly path: string;
  readonly listener: WatchListener;
}

/**
 * One domain's configuration database with upstream's semantics: keys kept
 * in byte order; multiread and list take any prefix (not only directories);
 * rm of a path ending in '/' removes everything under it; a watch on a key
 * fires for that key, a watch on a path ending in '/' for everything under it,
 * once per registration, after the change is made.
 */
export class QubesDb {
  readonly #keys: string[] = [];
  readonly #values = new Map<string, Buffer>();
  readonly #watches: Watch[] = [];
  readonly #changeListeners = new Set<(change: QubesDbChange) => void>();

  get size(): number {
    return this.#keys.length;
  }

  has(path: string): boolean {
    return this.#values.has(path);
  }

  read(path: string): Buffer | undefined {
    return this.#values.get(path);
  }

  /** Writes one key; throws QubesDbError for a path that cannot hold a value or a value the wire cannot carry. */
  write(path: string, value: Buffer | string, origin?: unknown): void {
    const bytes = typeof value === 'string' ? Buffer.from(value) : Buffer.from(value);
    QubesDb.checkWrite(path, bytes);
    if (!this.#values.has(path)) this.#keys.splice(this.#lowerBound(path), 0, path);
    this.#values.set(path, bytes);
    this.#changed({ kind: 'write', path, value: bytes, origin });
  }

  /** Why a write would be refused, as a thrown QubesDbError. */
  static checkWrite(path: string, value: Buffer): void {
    if (!isKeyPath(path)) throw new QubesDbError(`invalid QubesDB key ${JSON.stringify(path)}`);
    if (value.length >= QDB_MAX_DATA)
      throw new QubesDbError(`value of ${path} too long (${value.length} bytes)`);
    if (!isValidValue(value)) throw new QubesDbError(`value of ${path} holds a NUL byte`);
  }

  /** The keys rm(path) would remove. */
  matching(path: string): string[] {
    if (!isDirPath(path)) return this.#values.has(path) ? [path] : [];
    return this.list(path);
  }

  /** Removes a key, or every key under a path ending in '/'; false when nothing matched. */
  rm(path: string, origin?: unknown): boolean {
    if (!isValidPath(path) || path === '') return false;
    const gone = this.matching(path);
    if (gone.length === 0) return false;
    const first = this.#lowerBound(gone[0] ?? '');
    this.#keys.splice(first, gone.length);
    for (const key of gone) this.#values.delete(key);
    this.#changed({ kind: 'rm', path, origin });
    return true;
  }

  /** Every key starting with `prefix`, in order. */
  list(prefix: string): string[] {
    const out: string[] = [];
    for (let i = this.#lowerBound(prefix); i < this.#keys.length; i++) {
      const key = this.#keys[i] ?? '';
      if (!key.startsWith(prefix)) break;
      out.push(key);
    }
    return out;
  }

  /** Entries under `prefix` in order; the whole database in reverse order for '' (as upstream dumps it). */
  multiread(prefix: string): [string, Buffer][] {
    const keys = prefix === '' ? [...this.#keys].reverse() : this.list(prefix);
    return keys.map((key) => [key, this.#values.get(key) ?? Buffer.alloc(0)]);
  }

  /** Registers a watch; the returned function removes this one registration. */
  watch(path: string, listener: WatchListener): () => boolean {
    const watch: Watch = { path, listener };
    this.#watches.push(watch);
    return () => {
      const index = this.#watches.indexOf(watch);
      if (index < 0) return false;
      this.#watches.splice(index, 1);
      return true;
    };
  }

  /** Hears every change with its origin (the vchan connections forward them). */
  onChange(listener: (change: QubesDbChange) => void): () => void {
    this.#changeListeners.add(listener);
    return () => this.#changeListeners.delete(listener);
  }

  #changed(change: QubesDbChange): void {
    for (const listener of [...this.#changeListeners]) listener(change);
    for (const watch of [...this.#watches]) {
      if (QubesDb.watchMatches(watch.path, change.path)) watch.listener(change.path);
    }
  }

  /** A watch on 'DIR/' covers every path starting with it; any other watch only its own path. */
  static watchMatches(watched: string, changed: string): boolean {
    return isDirPath(watched) ? changed.startsWith(watched) : changed === watched;
  }

  #lowerBound(path: string): number {
    let low = 0;
    let high = this.#keys.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if ((this.#keys[mid] ?? '') < path) low = mid + 1;
      else high = mid;
    }
    return low;
  }
}
