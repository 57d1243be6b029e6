import { Readable, Writable } from 'node:stream';
import type { RpcConnection, StreamSink } from './connection.js';
import { PacketStatus, STREAM_CHUNK_BYTES } from './packet.js';
import { XdrError } from './xdr.js';

/**
 * Data we send to the daemon after a stream call (e.g. STORAGE_VOL_UPLOAD): each write becomes
 * STREAM/CONTINUE packets, `end()` sends STREAM/OK and 'finish' fires only once the daemon has
 * confirmed that every byte was stored. Writes wait for the socket to drain, so a fast source
 * cannot pile data up in memory; the daemon in turn stops reading while its disk is behind.
 */
export class UploadStream extends Writable implements StreamSink {
  private serial = 0;
  private replied = false;
  private early: Error | undefined;
  private failure: Error | undefined;
  private onSettled: ((err?: Error) => void) | undefined;
  private done = false;

  constructor(
    private readonly rpc: RpcConnection,
    private readonly procedure: number,
  ) {
    super({ highWaterMark: STREAM_CHUNK_BYTES });
  }

  /** @internal Called once the stream call has been accepted. */
  attach(serial: number): void {
    this.serial = serial;
    this.replied = true;
    if (this.early) this.error(this.early);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.sendChunks(chunk).then(() => cb(), cb);
  }

  private async sendChunks(chunk: Buffer): Promise<void> {
    for (let at = 0; at < chunk.length; at += STREAM_CHUNK_BYTES) {
      if (this.failure) throw this.failure;
      const piece = chunk.subarray(at, at + STREAM_CHUNK_BYTES);
      await this.rpc.sendStream(this.procedure, this.serial, PacketStatus.CONTINUE, piece);
    }
    if (this.failure) throw this.failure;
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.failure) return cb(this.failure);
    this.onSettled = (err) => {
      this.done = true;
      this.rpc.endStream(this.serial);
      cb(err);
    };
    this.rpc.sendStream(this.procedure, this.serial, PacketStatus.OK).catch((err: Error) => this.error(err));
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.done && this.replied) abort(this.rpc, this.procedure, this.serial);
    cb(err);
  }

  data(): void {
    // An upload carries no data from the daemon.
  }

  eof(): void {
    // Only downloads end with EOF.
  }

  confirmed(): void {
    const settle = this.onSettled;
    if (!settle) return this.error(new XdrError('daemon confirmed an upload we had not finished'));
    this.onSettled = undefined;
    settle();
  }

  error(err: Error): void {
    if (!this.replied) {
      // If the call itself failed, its rejection reports that and this stream is never used.
      this.early = err;
      return;
    }
    if (this.done) return;
    this.failure = err;
    this.done = true;
    this.rpc.endStream(this.serial);
    const settle = this.onSettled;
    this.onSettled = undefined;
    if (settle) settle(err);
    else if (this.writableLength === 0) this.destroy(err);
  }
}

/**
 * Payloads smaller than this are copied together, those of one socket read into one Buffer.
 * Readable counts only bytes, so a stream of 1-byte packets would otherwise queue a Buffer (and
 * a view that keeps a whole socket read alive) per byte: a million of them before the
 * high-water mark stops reading.
 */
const COALESCE_BYTES = 64 * 1024;

/**
 * Data the daemon sends after a stream call (e.g. STORAGE_VOL_DOWNLOAD). When the consumer falls
 * behind, the connection stops reading its socket until the consumer catches up: the daemon
 * sends one packet at a time and waits for it to be written, so this bounds memory to about one
 * `highWaterMark` (plus what one socket read brings).
 */
export class DownloadStream extends Readable implements StreamSink {
  private serial = 0;
  private replied = false;
  private early: Error | undefined;
  private paused = false;
  private finishing = false;
  private done = false;
  private staging: Buffer | undefined;
  private staged = 0;
  private flushQueued = false;

  constructor(
    private readonly rpc: RpcConnection,
    private readonly procedure: number,
  ) {
    super({ highWaterMark: 4 * STREAM_CHUNK_BYTES });
  }

  /** @internal Called with the serial as soon as the stream call is sent. */
  bind(serial: number): void {
    this.serial = serial;
  }

  /** @internal Called once the stream call has been accepted. */
  accepted(): void {
    this.replied = true;
    if (this.early) this.error(this.early);
  }

  override _read(): void {
    this.setPaused(false);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.setPaused(false);
    if (!this.done) {
      this.done = true;
      abort(this.rpc, this.procedure, this.serial);
    }
    cb(err);
  }

  data(chunk: Buffer): void {
    if (this.staged + chunk.length > COALESCE_BYTES) this.flush();
    if (chunk.length >= COALESCE_BYTES) {
      this.deliver(chunk);
      return;
    }
    this.staging ??= Buffer.allocUnsafe(COALESCE_BYTES);
    chunk.copy(this.staging, this.staged);
    this.staged += chunk.length;
    if (this.flushQueued) return;
    this.flushQueued = true;
    // Once the rest of this socket read is routed, before the next read: no later than that.
    process.nextTick(() => {
      this.flushQueued = false;
      if (!this.destroyed) this.flush();
    });
  }

  eof(): void {
    // Only the first end of data is answered: one finish is all the daemon waits for, and a
    // daemon repeating it must not make us queue a packet (and a drain listener) each time.
    if (this.finishing) return;
    // The daemon keeps the stream open until we finish it; its OK reply confirms.
    this.finishing = true;
    this.rpc.sendStream(this.procedure, this.serial, PacketStatus.OK).catch((err: Error) => this.error(err));
  }

  confirmed(): void {
    // Before our finish, an OK would pass off a truncated download as complete.
    if (!this.finishing) return this.error(new XdrError('daemon ended the download before its end of data'));
    this.done = true;
    this.rpc.endStream(this.serial);
    this.flush();
    this.push(null);
  }

  error(err: Error): void {
    if (!this.replied) {
      // If the call itself failed, its rejection reports that and this stream is never used.
      this.early = err;
      return;
    }
    if (this.done) return;
    this.done = true;
    this.rpc.endStream(this.serial);
    // What came before the error is the consumer's, as it would be without the coalescing.
    this.flush();
    this.destroy(err);
  }

  /** Hands the small packets held back to the consumer. */
  private flush(): void {
    if (this.staged === 0 || !this.staging) return;
    // A copy of exactly the staged bytes, so the staging buffer is reused rather than kept alive.
    const bytes = Buffer.from(this.staging.subarray(0, this.staged));
    this.staged = 0;
    this.deliver(bytes);
  }

  private deliver(chunk: Buffer): void {
    if (!this.push(chunk)) this.setPaused(true);
  }

  private setPaused(paused: boolean): void {
    if (paused === this.paused) return;
    this.paused = paused;
    if (paused) this.rpc.pauseReading();
    else this.rpc.resumeReading();
  }
}

/** Tells the daemon to abandon the stream (STREAM/ERROR from the client side means abort). */
function abort(rpc: RpcConnection, procedure: number, serial: number): void {
  rpc.endStream(serial);
  if (rpc.isClosed) return;
  // This can only fail because the connection is gone, which ends the stream on both sides anyway.
  rpc.sendStream(procedure, serial, PacketStatus.ERROR).catch(() => undefined);
}
