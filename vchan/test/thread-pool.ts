import { execFileSync } from 'node:child_process';
import { closeSync, constants, openSync, read, writeSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Queues one blocking FIFO read per libuv pool thread (FIFOs made in `dir`):
 * until release(), every fs operation the process starts waits in the queue.
 * Lets a test place a file before an unlink already started can run. release()
 * resolves once the operations queued behind the reads have had their turn.
 */
export function occupyThreadPool(dir: string): { release(): Promise<void> } {
  const threads = Number(process.env['UV_THREADPOOL_SIZE'] ?? 4);
  const fds = Array.from({ length: threads }, (_, i) => {
    const fifo = join(dir, `pool-${i}.fifo`);
    execFileSync('mkfifo', [fifo]);
    // Read-write: the open does not wait for a writer, the read waits for data.
    return openSync(fifo, constants.O_RDWR);
  });
  const reads = fds.map(
    (fd) =>
      new Promise<void>((resolve, reject) =>
        read(fd, Buffer.alloc(1), 0, 1, null, (e) => (e ? reject(e) : resolve())),
      ),
  );
  return {
    async release() {
      for (const fd of fds) writeSync(fd, 'x');
      await Promise.all(reads);
      for (const fd of fds) closeSync(fd);
      // Pool round trips after the reads: an operation queued behind them (an unlink's stat, then the unlink) has run.
      for (let i = 0; i < 20; i++) await stat(dir);
    },
  };
}
