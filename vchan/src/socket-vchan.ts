import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import {
  VchanError,
  failOnceRead,
  isPeerGone,
  readPastGonePeer,
  type Vchan,
  type VchanState,
} from '@odyssey/hal';

export interface SocketVchanRings {
  /** Bytes this end buffers from the peer before it stops reading the socket. */
  readonly readRing: number;
  /** Bytes this end accepts from its writer before write() reports backpressure. */
  readonly writeRing: number;
}

/**
 * One end of a socket-backed vchan. The bounded rings of libvchan are the
 * stream's high-water marks: the socket is paused while the read ring is full,
 * and write() returns false once the write ring is full.
 */
export class SocketVchan extends Duplex implements Vchan {
  #socket: Socket | undefined;
  #state: VchanState;
  /** A write found the peer gone; what it wrote before is still read, to the socket's end. */
  #writeGone = false;
  /** Bytes of the chunk handed to the socket whose write callback waits for 'drain'. */
  #held = 0;
  /** A write issued before the client connected; flushed on attach. */
  #early: { chunks: Buffer[]; callback: (error?: Error | null) => void } | undefined;
  #onDestroy: (() => void) | undefined;

  constructor(
    readonly remoteDomain: string,
    readonly port: number,
    rings: SocketVchanRings,
    socket?: Socket,
  ) {
    super({
      readableHighWaterMark: rings.readRing,
      writableHighWaterMark: rings.writeRing,
      allowHalfOpen: false,
    });
    this.#state = 'waiting';
    if (socket) this.attach(socket);
  }

  state(): VchanState {
    return this.#state;
  }

  dataReady(): number {
    return this.readableLength;
  }

  bufferSpace(): number {
    if (this.#state === 'disconnected') return 0;
    const queued = this.writableLength - this.#held + (this.#socket?.writableLength ?? 0);
    return Math.max(0, this.writableHighWaterMark - queued);
  }

  /** Runs when the vchan is destroyed before a client connected (the server's cleanup). */
  onDestroyWhileWaiting(cleanup: () => void): void {
    this.#onDestroy = cleanup;
  }

  attach(socket: Socket): void {
    this.#socket = socket;
    this.#state = 'connected';
    // The ring still bounds what is read: a peer that only shut its reading side keeps writing.
    readPastGonePeer(socket, () => (this.#writeGone = true));
    socket.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) socket.pause();
    });
    socket.on('end', () => this.#peerGone());
    socket.on('close', () => this.#peerGone());
    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (isPeerGone(error)) this.#peerGone();
      else
        this.destroy(
          new VchanError(`vchan ${this.remoteDomain}:${this.port}: ${error.message}`, { cause: error }),
        );
    });
    const early = this.#early;
    this.#early = undefined;
    if (early) this.#send(early.chunks, early.callback);
  }

  #peerGone(): void {
    if (this.#state === 'disconnected') return;
    this.#state = 'disconnected';
    this.push(null);
  }

  override _read(): void {
    this.#socket?.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.#socket) this.#send([chunk], callback);
    else this.#early = { chunks: [chunk], callback };
  }

  /**
   * Writes queued together (a qrexec header and its payload, corked by the writer) reach the
   * socket as one writev(2), so the writer need not copy them into one buffer first.
   */
  override _writev(
    writes: { chunk: Buffer; encoding: BufferEncoding }[],
    callback: (error?: Error | null) => void,
  ): void {
    const chunks = writes.map((write) => write.chunk);
    if (this.#socket) this.#send(chunks, callback);
    else this.#early = { chunks, callback };
  }

  #send(chunks: Buffer[], callback: (error?: Error | null) => void): void {
    const socket = this.#socket as Socket;
    const peerClosed = (): Error => new VchanError(`vchan ${this.remoteDomain}:${this.port}: peer closed`);
    if (this.#state === 'disconnected' || this.#writeGone || socket.writableEnded) {
      failOnceRead(this, this.#state === 'disconnected', callback, peerClosed);
      return;
    }
    let ok = true;
    if (chunks.length > 1) socket.cork();
    for (const chunk of chunks) ok = socket.write(chunk);
    if (chunks.length > 1) socket.uncork();
    if (ok) {
      callback();
      return;
    }
    this.#held = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
    const settle = (): void => {
      socket.off('drain', settle);
      socket.off('close', settle);
      this.#held = 0;
      if (this.#state === 'disconnected') failOnceRead(this, true, callback, peerClosed);
      else callback();
    };
    socket.on('drain', settle);
    socket.on('close', settle);
  }

  override _final(callback: (error?: Error | null) => void): void {
    const socket = this.#socket;
    if (!socket || socket.writableFinished || socket.destroyed) {
      callback();
      return;
    }
    const done = (): void => {
      socket.off('finish', done);
      socket.off('close', done);
      callback();
    };
    socket.on('finish', done);
    socket.on('close', done);
    socket.end();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const wasWaiting = this.#state === 'waiting';
    this.#state = 'disconnected';
    if (wasWaiting) {
      this.#onDestroy?.();
      this.#early?.callback(new VchanError('vchan closed before the client connected'));
      this.#early = undefined;
    }
    // A clean close still delivers what is queued, as closing a vchan does with its ring.
    if (error) this.#socket?.destroy();
    else this.#socket?.destroySoon();
    callback(error);
  }
}
