import * as fs from 'node:fs/promises';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import { ProtocolError, QubesException, StoragePoolException } from '../model/errors.js';
import { type PyInt, validateNumber } from '../model/validate.js';
import type { Volume } from './driver.js';

/** Zero detection granularity: big enough for cheap compares, small enough to keep holes useful. */
const BLOCK = 64 * 1024;
/**
 * Input is gathered into writes of this size: sockets deliver 64 KiB chunks,
 * and one pwrite per chunk through the thread pool would cap throughput.
 */
const STAGE = 4 * 1024 * 1024;
const ZEROS = Buffer.alloc(BLOCK);

function isZero(buf: Buffer): boolean {
  return buf.equals(ZEROS.subarray(0, buf.length));
}

/**
 * Writes a byte stream into the existing, still empty or sparse file at
 * `path`, skipping all-zero blocks so they stay holes. Holds at most one
 * stage plus the stream's own buffer: memory stays flat for any size.
 */
class SparseFileWriter extends Writable {
  /** Two stages: one fills from the socket while the other is being written. */
  private stage = Buffer.allocUnsafe(STAGE);
  private spare = Buffer.allocUnsafe(STAGE);
  private stageLen = 0;
  /** File offset of stage[0]. */
  private stagePos = 0;
  private received = 0;
  private writing: Promise<void> = Promise.resolve();
  private fh: fs.FileHandle | undefined;

  constructor(
    private readonly path: string,
    private readonly expected: number,
  ) {
    super({ highWaterMark: 2 * STAGE });
  }

  override _construct(callback: (error?: Error | null) => void): void {
    fs.open(this.path, 'r+').then(
      (fh) => {
        this.fh = fh;
        callback();
      },
      (err: Error) => callback(err),
    );
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.consume(chunk).then(() => callback(), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.finish().then(() => callback(), callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const fh = this.fh;
    this.fh = undefined;
    const close = () => {
      if (fh === undefined) callback(error);
      else
        fh.close().then(
          () => callback(error),
          (closeErr: Error) => callback(error ?? closeErr),
        );
    };
    // A write still in flight must finish before its file handle goes.
    this.writing.then(close, close);
  }

  private async consume(chunk: Buffer): Promise<void> {
    if (this.received + chunk.length > this.expected) {
      throw new StoragePoolException(`too much data (expected ${this.expected} bytes)`);
    }
    this.received += chunk.length;
    let off = 0;
    while (off < chunk.length) {
      const n = Math.min(STAGE - this.stageLen, chunk.length - off);
      chunk.copy(this.stage, this.stageLen, off, off + n);
      this.stageLen += n;
      off += n;
      if (this.stageLen === STAGE) await this.flush();
    }
  }

  /**
   * Hands the full stage to the disk and swaps in the spare one, after the
   * previous write (which used the spare) has finished.
   */
  private async flush(): Promise<void> {
    await this.writing;
    const buf = this.stage.subarray(0, this.stageLen);
    const pos = this.stagePos;
    this.writing = this.writeStage(buf, pos);
    // Its failure is reported by the next flush or the finish; until then it must not count as unhandled.
    this.writing.catch(() => undefined);
    [this.stage, this.spare] = [this.spare, this.stage];
    this.stagePos += this.stageLen;
    this.stageLen = 0;
  }

  /** Writes a stage's non-zero blocks, neighbours coalesced into one pwrite. */
  private async writeStage(buf: Buffer, pos: number): Promise<void> {
    let runStart = -1;
    for (let i = 0; i < buf.length; i += BLOCK) {
      const zero = isZero(buf.subarray(i, Math.min(i + BLOCK, buf.length)));
      if (!zero && runStart < 0) runStart = i;
      else if (zero && runStart >= 0) {
        await this.writeAll(buf.subarray(runStart, i), pos + runStart);
        runStart = -1;
      }
    }
    if (runStart >= 0) await this.writeAll(buf.subarray(runStart), pos + runStart);
  }

  private async writeAll(buf: Buffer, pos: number): Promise<void> {
    const fh = this.fh as fs.FileHandle;
    let done = 0;
    while (done < buf.length) {
      const { bytesWritten } = await fh.write(buf, done, buf.length - done, pos + done);
      done += bytesWritten;
    }
  }

  private async finish(): Promise<void> {
    if (this.received !== this.expected) {
      throw new StoragePoolException(
        `not enough data (copied ${this.received} bytes, expected ${this.expected} bytes)`,
      );
    }
    await this.flush();
    await this.writing;
    const fh = this.fh as fs.FileHandle;
    // Skipped zero blocks at the end must still count: the size is the declared one. A block
    // device (an LVM volume) has its size already and reads zeros where nothing was written.
    if ((await fh.stat()).isFile()) await fh.truncate(this.expected);
    await fh.datasync();
  }
}

export type ByteSource = NodeJS.ReadableStream | AsyncIterable<Uint8Array>;

/**
 * Streams exactly `size` bytes from `source` into the existing, empty or
 * all-holes file at `path` (sparse writes, ftruncate to `size`, fdatasync). Throws on a short or long
 * payload; what was written is then garbage and must be discarded by the caller.
 */
export async function writeSparse(path: string, source: ByteSource, size: number): Promise<void> {
  await pipeline(source, new SparseFileWriter(path, size));
}

/**
 * `admin.vm.volume.Import` / `ImportWithSize` done inside the daemon: the
 * data goes to the volume's import file and is committed atomically only when
 * exactly `size` bytes arrived (default: the volume's current size). Any
 * failure, including the client going away, leaves the old data in place.
 */
export async function importStream(volume: Volume, source: ByteSource, size?: number): Promise<void> {
  // The client may fail before the pipeline listens; pipeline still sees the stream's error state.
  if ('on' in source && typeof source.on === 'function') source.on('error', () => undefined);
  const target = await volume.importBegin(size);
  try {
    await writeSparse(target.path, source, target.size);
  } catch (err) {
    await volume.importEnd(false);
    // An I/O error (a full disk) answers as upstream's import script reports its failure.
    if (err instanceof QubesException) throw err;
    throw new QubesException(`Data import failed: ${err instanceof Error ? err.message : String(err)}`);
  }
  await volume.importEnd(true);
}

/** `ImportWithSize`'s header is one line, at most 21 bytes with its newline (upstream's limit). */
const MAX_SIZE_LINE = 21;

/**
 * Splits `ImportWithSize`'s payload into the declared size and the data that
 * follows, without reading past what the header needs. The line is read as
 * upstream's import script has qubesd read it: validate_number's checks and
 * messages, and an empty line declaring no size (the volume's current one, as
 * Import). A line upstream's qubesd-query refuses (too long, no newline, a byte
 * outside printable ASCII) gets no answer there; here a ProtocolError.
 */
export async function readSizeHeader(
  source: ByteSource,
): Promise<{ size: PyInt | undefined; data: AsyncIterable<Uint8Array> }> {
  const it = (source as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  let head = Buffer.alloc(0);
  for (;;) {
    const nl = head.indexOf(0x0a);
    if (nl >= 0) {
      const line = head.subarray(0, nl).toString('latin1');
      if (nl + 1 > MAX_SIZE_LINE || !/^[\x20-\x7e]*$/.test(line)) {
        throw new ProtocolError('Invalid size of new data');
      }
      const size = line === '' ? undefined : validateNumber(line, 'size of new data');
      return { size, data: remainder(head.subarray(nl + 1), it) };
    }
    if (head.length >= MAX_SIZE_LINE) throw new ProtocolError('Invalid size of new data');
    const next = await it.next();
    if (next.done) throw new ProtocolError('Invalid size of new data');
    head = Buffer.concat([head, Buffer.from(next.value)]);
  }
}

async function* remainder(first: Buffer, it: AsyncIterator<Uint8Array>): AsyncGenerator<Uint8Array> {
  if (first.length > 0) yield first;
  for (;;) {
    const next = await it.next();
    if (next.done) return;
    yield next.value;
  }
}
