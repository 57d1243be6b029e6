import { watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { decide, type Outcome, type Policy } from './evaluate.js';
import type { AccessDenied } from './errors.js';
import { loadPolicy, type LoadOptions, type LoadResult } from './loader.js';
import type { CallInit } from './request.js';
import type { SystemInfo } from './system-info.js';

export interface PolicyStoreOptions extends Omit<LoadOptions, 'files'> {
  /** Reload when a policy file changes. Default true. */
  readonly watch?: boolean;
  /** Quiet time after the last change before reloading; editors write in bursts. Default 100 ms. */
  readonly debounceMs?: number;
  /** Called after every load, successful or not. */
  readonly onReload?: (result: LoadResult) => void;
}

/**
 * The live policy of a daemon. It loads the directories, watches every
 * directory the load touched (policy dirs, include dirs, the legacy dir), and
 * reloads after changes. A load that fails leaves the store denying every
 * call until a later load succeeds: keeping the previous policy would let a
 * half-edited tree silently keep granting what its author meant to revoke.
 */
export class PolicyStore {
  private state: LoadResult;
  private readonly watchers = new Map<string, FSWatcher>();
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(private readonly options: PolicyStoreOptions = {}) {
    this.state = this.load();
  }

  get policy(): Policy | null {
    return this.state.policy;
  }

  /** Why every call is currently denied, or null when the policy loaded. */
  get error(): AccessDenied | null {
    return this.state.error;
  }

  get current(): LoadResult {
    return this.state;
  }

  /** Re-reads the policy now (also cancels a pending debounced reload). */
  reload(): LoadResult {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.state = this.load();
    return this.state;
  }

  evaluate(call: CallInit, systemInfo: SystemInfo): Outcome {
    return decide(this.state, call, systemInfo);
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
  }

  private load(): LoadResult {
    const result = loadPolicy(this.options);
    if (this.options.watch !== false && !this.closed) this.rewatch(result);
    this.options.onReload?.(result);
    return result;
  }

  /**
   * Directories rather than files are watched: editors and package managers
   * replace files by rename, which a watch on the old inode would miss, and a
   * missing include must be noticed when it appears.
   */
  private rewatch(result: LoadResult): void {
    const wanted = new Set<string>(result.dependencies.dirs);
    for (const file of result.dependencies.files) wanted.add(path.dirname(file));
    for (const [dir, watcher] of this.watchers) {
      if (!wanted.has(dir)) {
        watcher.close();
        this.watchers.delete(dir);
      }
    }
    for (const dir of wanted) {
      if (this.watchers.has(dir)) continue;
      try {
        const watcher = watch(dir, { persistent: false }, () => this.schedule());
        // A watched directory that goes away is picked up again by the reload it triggers.
        watcher.on('error', () => {
          watcher.close();
          this.watchers.delete(dir);
          this.schedule();
        });
        this.watchers.set(dir, watcher);
      } catch {
        // Not there (yet): nothing to watch. Its parent, if it is a dependency, is watched instead.
      }
    }
  }

  private schedule(): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.closed) this.state = this.load();
    }, this.options.debounceMs ?? 100);
    this.timer.unref();
  }
}
