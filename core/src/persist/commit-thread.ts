import { basename, dirname, join } from 'node:path';
import { Worker } from 'node:worker_threads';

/**
 * The same atomic replacement as writeFileAtomic (temp file, fsync, rename, fsync of the
 * directory) run as blocking calls on one worker thread: a save then costs one hand-over and one
 * reply instead of eight awaited thread-pool steps, each of which waits for the event loop
 * (bench/README.md, "Where the time went"). The source is inline so that the worker loads the
 * same way from the build and from the sources the tests run.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
parentPort.on('message', ({ id, path, tmp, dir, data, mode }) => {
  try {
    const fd = fs.openSync(tmp, 'w', mode);
    try {
      fs.writeFileSync(fd, data);
      fs.fsyncSync(fd);
    } catch (e) {
      fs.closeSync(fd);
      try { fs.unlinkSync(tmp); } catch {}
      throw e;
    }
    fs.closeSync(fd);
    try {
      fs.renameSync(tmp, path);
    } catch (e) {
      try { fs.unlinkSync(tmp); } catch {}
      throw e;
    }
    const dh = fs.openSync(dir, 'r');
    try { fs.fsyncSync(dh); } finally { fs.closeSync(dh); }
    parentPort.postMessage({ id });
  } catch (e) {
    parentPort.postMessage({ id, error: { message: String(e && e.message), code: e && e.code } });
  }
});
`;

interface Reply {
  readonly id: number;
  readonly error?: { readonly message: string; readonly code?: string };
}

interface Pending {
  resolve(): void;
  reject(e: Error): void;
}

/**
 * One worker for the whole process, started on first use; it holds the process open only while
 * a write is in flight, so a daemon (or a test) that is done exits without closing it.
 */
class CommitThread {
  private worker: Worker | null = null;
  private nextId = 0;
  private readonly pending = new Map<number, Pending>();

  write(path: string, data: string, mode: number): Promise<void> {
    const worker = this.start();
    const id = this.nextId++;
    const dir = dirname(path);
    const tmp = join(dir, `.${basename(path)}.${process.pid}.${Date.now()}.${id}.tmp`);
    return new Promise<void>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      if (this.pending.size === 1) worker.ref();
      worker.postMessage({ id, path, tmp, dir, data, mode });
    });
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.unref();
    worker.on('message', (r: Reply) => this.settle(r));
    // A worker that dies takes its writes with it: fail them, and start a new one on the next write.
    worker.on('error', (e) => this.failAll(e));
    worker.on('exit', (code) => this.failAll(new Error(`the commit thread exited (${code})`)));
    this.worker = worker;
    return worker;
  }

  private settle(r: Reply): void {
    const p = this.pending.get(r.id);
    if (!p) return;
    this.pending.delete(r.id);
    if (this.pending.size === 0) this.worker?.unref();
    if (!r.error) return p.resolve();
    const e = new Error(r.error.message) as NodeJS.ErrnoException;
    if (r.error.code !== undefined) e.code = r.error.code;
    p.reject(e);
  }

  private failAll(e: Error): void {
    this.worker = null;
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.reject(e);
  }
}

const thread = new CommitThread();

/** writeFileAtomic's guarantees (old or new content after any crash, durable once resolved), off the event loop. */
export function writeFileAtomicOffThread(path: string, data: string, mode = 0o660): Promise<void> {
  return thread.write(path, data, mode);
}
