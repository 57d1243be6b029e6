import { Duplex } from 'node:stream';
import { VchanError, failOnceRead, type Vchan, type VchanState } from '@odyssey/hal';
import type { EventWatch, LibxenvchanBinding, VchanCtrl } from './binding.js';

/** Largest chunk moved out of the ring per read call. */
const READ_CHUNK = 64 * 1024;

const STATES: Record<number, VchanState> = { 0: 'disconnected', 1: 'connected', 2: 'waiting' };

interface PendingWrite {
  chunk: Buffer;
  offset: number;
  callback: (error?: Error | null) => void;
}

export interface XenVchanRings {
  /** Bytes buffered on the Node side past the ring, in each direction (the streams' high-water marks). */
  readonly readRing: number;
  readonly writeRing: number;
}

/**
 * One libxenvchan channel as a Duplex. The rings are the shared pages: bytes
 * move between them and the stream on every wake of the event channel, which
 * is watched on the event loop (event-watch.ts) with at most one wait in flight.
 *
 * libxenvchan_close frees the ctrl and closes the event channel's fd, so it must
 * not run while a wait is still out on that fd (a late report would reach a
 * freed ctrl, or another vchan that reused the fd number): destroy() wakes the
 * watch and the close runs once that wait has settled.
 */
export class XenVchan extends Duplex implements Vchan {
  readonly #binding: LibxenvchanBinding;
  #ctrl: VchanCtrl | undefined;
  readonly #watch: EventWatch;
  /** A watch.next() is in flight: the ctrl must stay allocated until it settles. */
  #waiting = false;
  #closing = false;
  /**
   * A service pass is running. Stream callbacks it triggers (a failed write's callback, a push)
   * may destroy the stream synchronously; the close then waits for the pass to end, which still
   * reads the ctrl.
   */
  #inPass = false;
  #connected: boolean;
  #ended = false;
  /** The reader wants more (the last push was accepted). */
  #wantRead = true;
  #pending: PendingWrite | undefined;
  #serviceQueued = false;
  #onConnect: (() => void) | undefined;
  #onDestroyWhileWaiting: (() => void) | undefined;
  #onReleased!: () => void;
  #abandoned = false;
  /** Resolves once libxenvchan_close has run: a server's xenstore entries are gone by then. */
  readonly released = new Promise<void>((resolve) => (this.#onReleased = resolve));

  constructor(
    binding: LibxenvchanBinding,
    ctrl: VchanCtrl,
    readonly remoteDomain: string,
    readonly port: number,
    rings: XenVchanRings,
  ) {
    super({
      readableHighWaterMark: rings.readRing,
      writableHighWaterMark: rings.writeRing,
      allowHalfOpen: false,
    });
    this.#binding = binding;
    this.#ctrl = ctrl;
    // The rings are served from the event loop: read and write must never wait in libxenvchan.
    binding.setBlocking(ctrl, false);
    this.#watch = binding.watch(binding.fdForSelect(ctrl));
    this.#connected = binding.isOpen(ctrl) !== 2;
    this.#kick();
  }

  /** libxenvchan_is_open: 'waiting' while a server has no client yet. */
  state(): VchanState {
    if (!this.#ctrl || this.#closing) return 'disconnected';
    return STATES[this.#binding.isOpen(this.#ctrl)] ?? 'disconnected';
  }

  /** Readable without waiting: what the stream holds plus what the ring holds. */
  dataReady(): number {
    const ring = this.#ctrl && !this.#closing ? Math.max(0, this.#binding.dataReady(this.#ctrl)) : 0;
    return this.readableLength + ring;
  }

  /** Writable into the ring without waiting, less what is already queued for it. */
  bufferSpace(): number {
    if (!this.#ctrl || this.#closing) return 0;
    const queued = this.writableLength - (this.#pending?.offset ?? 0);
    return Math.max(0, this.#binding.bufferSpace(this.#ctrl) - queued);
  }

  /** Runs once when the peer connects (at once for a client). */
  onConnect(callback: () => void): void {
    if (this.#connected) callback();
    else this.#onConnect = callback;
  }

  /**
   * Destroys the stream without libxenvchan_close, for a domU restored under a new domid: the
   * restore left the channel's event channel without its kernel binding, and closing it then hits
   * a BUG_ON in Linux's evtchn driver (6.1: unbinding a user port that has no irq), which kills the
   * thread closing it. The fd, grants and ctrl are left behind instead (freed when the process
   * exits); the channel is dead anyway.
   */
  abandon(): void {
    this.#abandoned = true;
    this.destroy();
  }

  /** Runs when the vchan is destroyed before a client connected (the server's cleanup). */
  onDestroyWhileWaiting(cleanup: () => void): void {
    this.#onDestroyWhileWaiting = cleanup;
  }

  override _read(): void {
    this.#wantRead = true;
    this.#kick();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#write(chunk, callback);
  }

  #write(chunk: Buffer, callback: (error?: Error | null) => void): void {
    if (this.#ended) {
      failOnceRead(this, true, callback, () => this.#error('peer closed'));
      return;
    }
    if (!this.#ctrl || this.#closing) {
      callback(this.#error('closed'));
      return;
    }
    this.#pending = { chunk, offset: 0, callback };
    this.#kick();
  }

  /**
   * A corked batch (a qrexec header and its payload) goes into the ring as one write, with one
   * notification of the peer, as it did when writeMessage copied the two together.
   */
  override _writev(
    writes: { chunk: Buffer; encoding: BufferEncoding }[],
    callback: (error?: Error | null) => void,
  ): void {
    this.#write(Buffer.concat(writes.map((write) => write.chunk)), callback);
  }

  /** vchan has no half-close: ending the writable side closes the channel, as libvchan_close does. */
  override _final(callback: (error?: Error | null) => void): void {
    if (this.#connected) {
      this.#end();
      this.#shutdown();
    }
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.#connected) this.#onDestroyWhileWaiting?.();
    const pending = this.#pending;
    this.#pending = undefined;
    pending?.callback(this.#error('closed'));
    this.#shutdown();
    callback(error);
  }

  /**
   * Closes the channel (the stream may still hold bytes for its reader): at once,
   * or, while a wait is in flight, once the woken wait has returned, or, inside a
   * service pass, once that pass is done.
   */
  #shutdown(): void {
    if (this.#closing) return;
    this.#closing = true;
    if (this.#waiting) this.#watch.wake();
    else if (!this.#inPass) this.#release();
  }

  /** Services the rings once, soon: stream callbacks may run inside push() and must not re-enter. */
  #kick(): void {
    if (this.#serviceQueued) return;
    this.#serviceQueued = true;
    process.nextTick(() => {
      this.#serviceQueued = false;
      this.#service();
    });
  }

  /** One pass after a wake; a close asked for during it runs once it returns. */
  #service(): void {
    const ctrl = this.#ctrl;
    if (!ctrl || this.#closing) return;
    this.#inPass = true;
    try {
      this.#pass(ctrl);
    } finally {
      this.#inPass = false;
      if (this.#closing && !this.#waiting) this.#release();
    }
  }

  /** State, reads, writes, then wait for the next notification; stops once the stream closes. */
  #pass(ctrl: VchanCtrl): void {
    const open = this.#binding.isOpen(ctrl);
    // A client that came and went before this pass still connected: its bytes are in the ring.
    if (!this.#connected && open !== 2) {
      this.#connected = true;
      const onConnect = this.#onConnect;
      this.#onConnect = undefined;
      onConnect?.();
    }
    if (!this.#drain(ctrl) || this.#closing) return;
    this.#flush(ctrl);
    if (this.#closing) return;
    if (open === 0) {
      // The peer closed. Its last bytes stay readable; the channel ends once they are read, and a
      // pending write fails then (#end).
      if (!this.#closing && this.#binding.dataReady(ctrl) <= 0) {
        this.#end();
        this.#shutdown();
      }
      return;
    }
    this.#arm(ctrl);
  }

  /** Moves ring bytes into the stream while the reader takes them; false if the vchan failed. */
  #drain(ctrl: VchanCtrl): boolean {
    while (this.#wantRead && !this.#ended && !this.#closing) {
      const ready = this.#binding.dataReady(ctrl);
      if (ready <= 0) return true;
      const buffer = Buffer.allocUnsafe(Math.min(ready, READ_CHUNK));
      const n = this.#binding.read(ctrl, buffer, buffer.length);
      if (n < 0) return this.#fail('libxenvchan_read failed');
      if (n === 0) return true;
      this.#wantRead = this.push(n === buffer.length ? buffer : buffer.subarray(0, n));
    }
    return true;
  }

  /**
   * Writes the pending chunk as far as the ring has room. Not through buffer_space first: that asks
   * the peer to notify this end after its next read, a wake for nothing unless the ring is full,
   * which the non-blocking write asks for itself.
   */
  #flush(ctrl: VchanCtrl): void {
    const pending = this.#pending;
    if (!pending) return;
    while (pending.offset < pending.chunk.length) {
      const rest = pending.chunk.subarray(pending.offset);
      const n = this.#binding.write(ctrl, rest, rest.length);
      // -1: the peer closed, which the caller's pass reports; 0: the ring is full.
      if (n <= 0) return;
      pending.offset += n;
    }
    this.#pending = undefined;
    pending.callback();
  }

  /** Waits for the next notification unless a wait is already out. */
  #arm(ctrl: VchanCtrl): void {
    if (this.#waiting) return;
    this.#waiting = true;
    this.#watch.next().then(
      (event) => {
        this.#waiting = false;
        if (this.#closing) {
          this.#release();
          return;
        }
        // Consumes the notification and unmasks the port; never blocks here, one is pending.
        if (event && this.#binding.wait(ctrl) < 0) {
          this.#fail('libxenvchan_wait failed');
          return;
        }
        this.#service();
      },
      (error: unknown) => {
        this.#waiting = false;
        if (this.#closing) this.#release();
        else this.destroy(error as Error);
      },
    );
  }

  #end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.push(null);
    const pending = this.#pending;
    this.#pending = undefined;
    if (pending) failOnceRead(this, true, pending.callback, () => this.#error('peer closed'));
  }

  #error(reason: string): VchanError {
    return new VchanError(`vchan ${this.remoteDomain}:${this.port}: ${reason}`);
  }

  #fail(what: string): false {
    this.destroy(this.#error(`${what} (errno ${this.#binding.errno()})`));
    return false;
  }

  /** Frees the channel; only when no wait is in flight. */
  #release(): void {
    const ctrl = this.#ctrl;
    if (!ctrl) return;
    this.#ctrl = undefined;
    this.#watch.close();
    if (!this.#abandoned) this.#binding.close(ctrl);
    this.#onReleased();
  }
}
