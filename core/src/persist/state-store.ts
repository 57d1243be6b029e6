import { readFile } from 'node:fs/promises';

import type { Saver } from './saver.js';
import type { App } from '../model/app.js';
import { removeStaleTemps, writeFileAtomic } from './atomic-file.js';
import { QubesXmlWriter, loadQubesXml } from './qubes-xml.js';
import type { StorageSource, StorageState } from './qubes-xml.js';
import type { Vm } from '../model/vm.js';

/**
 * qubes.xml on disk. Saves are group-committed: a save requested while one is
 * being written is folded into the next write, which serialises the app only
 * when it starts, so every caller's change is on disk when its promise resolves
 * and a burst of N writes costs far fewer than N file replacements.
 */
export class StateStore implements Saver {
  private inFlight: Promise<void> | null = null;
  private queued: Promise<void> | null = null;
  readonly writer: QubesXmlWriter;

  constructor(
    readonly path: string,
    private readonly app: App,
    storage: StorageSource,
  ) {
    this.writer = new QubesXmlWriter(app, storage);
  }

  /** Reads the file into the (empty) app; false if there is no file yet. */
  async load(warn: (msg: string) => void): Promise<StorageState | null> {
    // A daemon killed while saving leaves its temp file; the file itself is whole (old or new).
    await removeStaleTemps(this.path);
    let xml: string;
    try {
      xml = await readFile(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
    return loadQubesXml(this.app, xml, warn);
  }

  /** `changed`: a VM whose configuration changed without an event (e.g. its volumes). */
  save(changed?: Vm): Promise<void> {
    if (changed) this.writer.markDirty(changed);
    if (this.queued) return this.queued;
    if (!this.inFlight) return this.write();
    const after = this.inFlight.catch(() => undefined);
    this.queued = after.then(() => {
      this.queued = null;
      return this.write();
    });
    return this.queued;
  }

  private write(): Promise<void> {
    const xml = this.writer.serialize();
    const run = writeFileAtomic(this.path, xml).finally(() => {
      if (this.inFlight === run) this.inFlight = null;
    });
    this.inFlight = run;
    return run;
  }
}
