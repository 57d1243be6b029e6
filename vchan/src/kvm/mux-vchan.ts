import { Duplex } from 'node:stream';
import { VchanError, failOnceRead, type Vchan, type VchanState } from '@odyssey/hal';
import { FrameType, MAX_DATA, u32 } from './frames.js';

/** What a stream needs from its channel. */
export interface StreamChannel {
  send(type: FrameType, id: number, payload?: Buffer): void;
  forget(stream: MuxVchan): void;
  /**
   * Whether the stream may send DATA or CREDIT now. If not, the link holds as much as it should
   * (the peer is not reading it) and the channel calls the stream's onDrain() once it takes more.
   */
  admit(stream: MuxVchan): boolean;
}

export interface MuxVchanRings {
  /** Bytes this end buffers from the peer: the window it grants. */
  readonly readRing: number;
  /** Bytes this end accepts from its writer before write() reports backpressure. */
  readonly writeRing: number;
}

interface PendingWrite {
  chunk: Buffer;
  offset: number;
  callback: (error?: Error | null) => void;
}

/**
 * One vchan carried over a multiplexed channel. The peer's read ring is a credit: this end
 * sends at most that many bytes before the peer says it consumed some, so a slow reader
 * stops its writer (write() returns false) instead of filling the channel, and one stream
 * never blocks the others. The credit is the peer's word, so the channel has a say too: a
 * link the peer does not read stops every writer to it (see StreamChannel.admit).
 */
export class MuxVchan extends Duplex implements Vchan {
  id = 0;
  #state: VchanState = 'waiting';
  #channel: StreamChannel | undefined;
  /** Bytes the peer can still take. */
  #credit = 0;
  #pending: PendingWrite | undefined;
  #received = 0;
  #granted = 0;
  /** Bytes the peer may still send: the window offered, plus every CREDIT since, less what came. */
  #allowed: number;
  /** The window offered to the peer: the read ring, or the larger high-water mark a big read(n) set. */
  #window: number;
  #closeSent = false;
  #onDestroyWhileWaiting: (() => void) | undefined;
  #onGone: (() => void) | undefined;

  constructor(
    readonly remoteDomain: string,
    readonly port: number,
    readonly rings: MuxVchanRings,
  ) {
    super({
      readableHighWaterMark: rings.readRing,
      writableHighWaterMark: rings.writeRing,
      allowHalfOpen: false,
    });
    this.#window = rings.readRing;
    this.#allowed = rings.readRing;
  }

  state(): VchanState {
    return this.#state;
  }

  dataReady(): number {
    return this.readableLength;
  }

  bufferSpace(): number {
    if (this.#state === 'disconnected') return 0;
    // What write() takes before it reports backpressure; that buffer drains as the peer grants credit.
    return Math.max(0, this.writableHighWaterMark - this.writableLength);
  }

  /** Runs when the vchan is destroyed before a client connected (the server's cleanup). */
  onDestroyWhileWaiting(cleanup: () => void): void {
    this.#onDestroyWhileWaiting = cleanup;
  }

  /**
   * Runs `callback` once the stream is off its channel (closed by either end, its channel gone, or
   * destroyed): nothing passes through it from then on, whatever its buffers still hold.
   */
  onGone(callback: () => void): void {
    if (this.#state === 'disconnected') callback();
    else this.#onGone = callback;
  }

  /** @internal The stream is open: `credit` is the peer's window. */
  connect(channel: StreamChannel, id: number, credit: number): void {
    this.#channel = channel;
    this.id = id;
    this.#credit = credit;
    this.#state = 'connected';
    this.#pump();
  }

  /**
   * @internal False when the peer sent more than it was granted: nothing would bound what it
   * makes this end buffer, so the stream is closed instead, keeping what came within the credit.
   */
  onData(data: Buffer): boolean {
    if (this.#state !== 'connected') return true;
    if (data.length > this.#allowed) {
      this.#sendClose();
      this.#disconnect();
      return false;
    }
    this.#allowed -= data.length;
    this.#received += data.length;
    this.push(data);
    return true;
  }

  /** @internal */
  onCredit(bytes: number): void {
    this.#credit += bytes;
    this.#pump();
  }

  /** @internal The link takes frames again: what waited for it goes out. */
  onDrain(): void {
    this.#grant();
    this.#pump();
  }

  /** @internal The peer closed the stream, or the channel went away. */
  onPeerGone(): void {
    if (this.#state === 'disconnected') return;
    this.#closeSent = true;
    this.#disconnect();
  }

  #disconnect(): void {
    this.#state = 'disconnected';
    this.#channel?.forget(this);
    const pending = this.#pending;
    this.#pending = undefined;
    this.push(null);
    if (pending) failOnceRead(this, true, pending.callback, () => this.#peerClosed());
    this.#gone();
  }

  #gone(): void {
    const gone = this.#onGone;
    this.#onGone = undefined;
    gone?.();
  }

  #peerClosed(): VchanError {
    return new VchanError(`vchan ${this.remoteDomain}:${this.port}: peer closed`);
  }

  #pump(): void {
    const p = this.#pending;
    if (!p || this.#state !== 'connected') return;
    const channel = this.#channel as StreamChannel;
    while (this.#credit > 0 && p.offset < p.chunk.length && channel.admit(this)) {
      const n = Math.min(this.#credit, p.chunk.length - p.offset, MAX_DATA);
      channel.send(FrameType.DATA, this.id, p.chunk.subarray(p.offset, p.offset + n));
      p.offset += n;
      this.#credit -= n;
    }
    if (p.offset === p.chunk.length) {
      this.#pending = undefined;
      p.callback();
    }
  }

  override _read(): void {
    this.#grant();
  }

  // Every way of consuming (read(), flowing mode, async iteration) goes through read(), while
  // _read() is skipped whenever a previous one is still unanswered: credits are granted here.
  override read(size?: number): ReturnType<Duplex['read']> {
    const chunk: unknown = super.read(size);
    this.#grant();
    return chunk;
  }

  /**
   * Grants back what the reader consumed, at once: a reader waiting for a whole message
   * (read(n)) must not wait for bytes the writer holds back for want of credit. A read
   * bigger than the ring raises the stream's high-water mark; the window grows with it.
   */
  #grant(): void {
    if (this.#state !== 'connected') return;
    const channel = this.#channel as StreamChannel;
    const window = Math.max(this.rings.readRing, this.readableHighWaterMark);
    const grown = window - this.#window;
    const consumed = this.#received - this.readableLength - this.#granted;
    // A reader taking a byte at a time would answer each with a CREDIT: on a link the peer does
    // not read, they wait, and go out as one.
    if (consumed + grown <= 0 || !channel.admit(this)) return;
    this.#window = window;
    this.#granted += consumed;
    this.#allowed += consumed + grown;
    channel.send(FrameType.CREDIT, this.id, u32(consumed + grown));
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#write(chunk, callback);
  }

  #write(chunk: Buffer, callback: (error?: Error | null) => void): void {
    if (this.#state === 'disconnected') {
      failOnceRead(this, true, callback, () => this.#peerClosed());
      return;
    }
    this.#pending = { chunk, offset: 0, callback };
    this.#pump();
  }

  /**
   * A corked batch (a qrexec header and its payload) goes out as one write, so it fills DATA
   * frames as one piece did before writers stopped copying the two together.
   */
  override _writev(
    writes: { chunk: Buffer; encoding: BufferEncoding }[],
    callback: (error?: Error | null) => void,
  ): void {
    this.#write(Buffer.concat(writes.map((write) => write.chunk)), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.#state === 'connected') this.#sendClose();
    if (this.#state !== 'waiting') this.#disconnect();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const wasWaiting = this.#state === 'waiting';
    if (this.#state === 'connected') this.#sendClose();
    this.#state = 'disconnected';
    this.#channel?.forget(this);
    if (wasWaiting) this.#onDestroyWhileWaiting?.();
    const pending = this.#pending;
    this.#pending = undefined;
    pending?.callback(new VchanError(`vchan ${this.remoteDomain}:${this.port} closed`));
    this.#gone();
    callback(error);
  }

  #sendClose(): void {
    if (this.#closeSent) return;
    this.#closeSent = true;
    this.#channel?.send(FrameType.CLOSE, this.id);
  }
}
