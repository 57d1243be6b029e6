import { readFile } from 'node:fs/promises';

import type { Saver } from './saver.js';
import type { App } from '../model/app.js';
import { removeStaleTemps, writeFileAtomic } from './atomic-file.js';
import { Journal } from './journal.js';
import { QubesXmlWriter, loadQubesXml, qubesDocument } from './qubes-xml.js';
import type { StorageSource, StorageState } from './qubes-xml.js';
import type { Vm } from '../model/vm.js';

/** A checkpoint is due after this many records or bytes in the journal... */
const CHECKPOINT_RECORDS = 512;
const CHECKPOINT_BYTES = 16 * 1024 * 1024;
/** ...or once no save has been asked for this long. */
const IDLE_MS = 1000;

/**
 * qubes.xml on disk, written through a journal (journal.ts). A save appends
 * one record in one synchronised write; qubes.xml itself is rewritten atomically as a
 * checkpoint (after CHECKPOINT_RECORDS records or CHECKPOINT_BYTES, when idle,
 * and at close), then the journal is emptied. Start-up loads qubes.xml, or
 * the journal's last whole record, which supersedes it, and checkpoints that.
 *
 * Saves are group-committed: a save requested while one is being written is
 * folded into the next record, which serialises the app only when it starts,
 * so every caller's change is on disk when its promise resolves and a burst of
 * N writes costs far fewer than N appends. Records are written one at a
 * time: two in flight at once measured slower (bench/README.md). A record the
 * disk refused leaves the journal's tail unknown, so the next save or flush
 * rewrites qubes.xml whole and empties the journal instead.
 */
export class StateStore implements Saver {
  private tail: Promise<void> = Promise.resolve();
  private queued: Promise<void> | null = null;
  /** A record's write failed: the journal's tail is unknown until qubes.xml is rewritten. */
  private failed = false;
  private idle: NodeJS.Timeout | null = null;
  /**
   * The document the journal's last record holds: what the next checkpoint writes. Built only
   * then: joining every domain's element on each append would cost as much as the record itself.
   */
  private journaled: (() => string) | null = null;
  private readonly journal: Journal;
  readonly writer: QubesXmlWriter;

  constructor(
    readonly path: string,
    private readonly app: App,
    storage: StorageSource,
  ) {
    this.writer = new QubesXmlWriter(app, storage);
    this.journal = new Journal(`${path}.journal`);
  }

  /** Reads the state into the (empty) app; null if there is none yet. */
  async load(warn: (msg: string) => void): Promise<StorageState | null> {
    // A daemon killed while checkpointing leaves its temp file; qubes.xml itself is whole (old or new).
    await removeStaleTemps(this.path);
    const replayed = await this.journal.open();
    let xml = replayed.document;
    if (xml === null) {
      try {
        xml = await readFile(this.path, 'utf8');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
    }
    // No qubes.xml and at most a torn first record: nothing was acknowledged; the next record overwrites it.
    if (xml === null) return null;
    const state = loadQubesXml(this.app, xml, warn);
    const document = replayed.document;
    if (document !== null) {
      this.journaled = () => document;
      await this.checkpoint();
    }
    return state;
  }

  /** `changed`: a VM whose configuration changed without an event (e.g. its volumes). */
  save(changed?: Vm): Promise<void> {
    if (changed) this.writer.markDirty(changed);
    if (this.queued) return this.queued;
    const run = this.tail.then(() => {
      this.queued = null;
      return this.failed ? this.rewrite() : this.append();
    });
    this.queued = run;
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Writes qubes.xml now and empties the journal (first start, shutdown). */
  flush(): Promise<void> {
    this.clearIdle();
    const run = this.tail.then(() => (this.failed ? this.rewrite() : this.checkpoint()));
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Saves, checkpoints and closes the journal. */
  async close(): Promise<void> {
    await this.save();
    await this.flush();
    await this.journal.close();
  }

  private async append(): Promise<void> {
    const { head, domains } = this.writer.parts();
    try {
      await this.journal.append(head, domains);
    } catch (e) {
      this.failed = true;
      throw e;
    }
    this.journaled = () =>
      qubesDocument(
        head,
        domains.map(([, x]) => x),
      );
    this.clearIdle();
    if (this.journal.records >= CHECKPOINT_RECORDS || this.journal.bytes >= CHECKPOINT_BYTES) {
      // Ordered after the saves already queued, which were asked for before this checkpoint was due.
      void this.flush().catch(() => undefined);
    } else {
      this.idle = setTimeout(() => {
        this.idle = null;
        // A failed checkpoint leaves the journal whole; the next idle period or close() tries again.
        void this.flush().catch(() => undefined);
      }, IDLE_MS);
      this.idle.unref();
    }
  }

  /** qubes.xml gets the app as it is now (a state a save or flush was asked for); the journal is emptied. */
  private async rewrite(): Promise<void> {
    await writeFileAtomic(this.path, this.writer.serialize());
    await this.journal.clear();
    this.journaled = null;
    this.failed = false;
  }

  private async checkpoint(): Promise<void> {
    if (this.journal.bytes === 0) return;
    if (this.journaled !== null) await writeFileAtomic(this.path, this.journaled());
    await this.journal.clear();
  }

  private clearIdle(): void {
    if (this.idle) clearTimeout(this.idle);
    this.idle = null;
  }
}
