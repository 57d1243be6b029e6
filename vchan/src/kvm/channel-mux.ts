import { randomBytes } from 'node:crypto';
import { VchanError } from '@odyssey/core/hal';
import { FrameDecoder, FrameError, FrameType, encodeFrame, u32, type Frame } from './frames.js';
import { MuxVchan, type MuxVchanRings, type StreamChannel } from './mux-vchan.js';

export type ChannelSide = 'host' | 'guest';

/** Why an OPEN did not give a stream: the caller retries on these until its deadline. */
export class OpenRefused extends Error {
  override name = 'OpenRefused';
}

export interface BoundMuxVchan {
  readonly vchan: MuxVchan;
  /** Resolves when a client connected; rejects if the vchan is destroyed first. */
  readonly connected: Promise<MuxVchan>;
}

interface PendingOpen {
  readonly vchan: MuxVchan;
  readonly resolve: (vchan: MuxVchan) => void;
  readonly reject: (error: Error) => void;
}

const GUEST_ID_BIT = 0x80000000;

/**
 * Every vchan between the admin domain and one guest, over that guest's single channel
 * (see frames.ts for the protocol). The channel's link may come and go (the host end
 * reconnects, the guest reboots): streams die with a link, listening servers stay.
 */
export class ChannelMux implements StreamChannel {
  readonly #side: ChannelSide;
  readonly #nonce = randomBytes(8);
  readonly #decoder = new FrameDecoder();
  readonly #streams = new Map<number, MuxVchan>();
  readonly #servers = new Map<number, MuxVchan>();
  readonly #opening = new Map<number, PendingOpen>();
  #send: ((bytes: Buffer) => void) | undefined;
  #peerNonce: Buffer | undefined;
  #nextId = 1;

  constructor(
    side: ChannelSide,
    readonly remoteDomain: string,
    private readonly log: (message: string) => void = () => undefined,
  ) {
    this.#side = side;
  }

  get linked(): boolean {
    return this.#send !== undefined;
  }

  /** Whether a server waits for a client here (the host keeps the link up for those). */
  get hasServers(): boolean {
    return this.#servers.size > 0;
  }

  /** A link is up: frames go to `send` from now on. */
  attach(send: (bytes: Buffer) => void): void {
    this.#send = send;
    this.#decoder.reset();
    this.#peerNonce = undefined;
    this.send(FrameType.HELLO, 0, Buffer.concat([this.#nonce, Buffer.from([0])]));
  }

  /** The link is gone: every stream on it is disconnected, opens in flight fail. */
  detach(): void {
    this.#send = undefined;
    this.#decoder.reset();
    this.#dropStreams('channel closed');
  }

  /** Bytes read from the link. */
  receive(chunk: Buffer): void {
    let frames: Frame[];
    try {
      frames = this.#decoder.push(chunk);
    } catch (error) {
      if (!(error instanceof FrameError)) throw error;
      // A corrupt channel cannot be resynchronised mid-stream: start a new session.
      this.log(`vchan channel to ${this.remoteDomain}: ${error.message}; resetting`);
      this.#decoder.reset();
      this.#dropStreams('corrupt channel');
      return;
    }
    for (const frame of frames) this.#handle(frame);
  }

  /** Registers a server on `port`; it takes the first client that opens it. */
  listen(port: number, rings: MuxVchanRings): BoundMuxVchan {
    const vchan = new MuxVchan(this.remoteDomain, port, rings);
    const connected = new Promise<MuxVchan>((resolve, reject) => {
      this.#servers.set(port, vchan);
      vchan.once('connected', () => resolve(vchan));
      vchan.onDestroyWhileWaiting(() => {
        if (this.#servers.get(port) === vchan) this.#servers.delete(port);
        reject(new VchanError(`vchan server ${this.remoteDomain}:${port} closed before a client connected`));
      });
    });
    connected.catch(() => undefined);
    return { vchan, connected };
  }

  /** One attempt to open the peer's server on `port`; rejects with OpenRefused when there is none. */
  open(port: number, rings: MuxVchanRings): Promise<MuxVchan> {
    if (!this.#send) return Promise.reject(new OpenRefused('channel not connected'));
    const id = this.#allocateId();
    const vchan = new MuxVchan(this.remoteDomain, port, rings);
    return new Promise<MuxVchan>((resolve, reject) => {
      this.#opening.set(id, { vchan, resolve, reject });
      this.send(FrameType.OPEN, id, Buffer.concat([u32(port), u32(rings.readRing)]));
    });
  }

  send(type: FrameType, id: number, payload?: Buffer): void {
    this.#send?.(encodeFrame(type, id, payload));
  }

  forget(stream: MuxVchan): void {
    if (this.#streams.get(stream.id) === stream) this.#streams.delete(stream.id);
  }

  #allocateId(): number {
    const id = (this.#nextId++ & 0x7fffffff) | (this.#side === 'guest' ? GUEST_ID_BIT : 0);
    return id >>> 0;
  }

  #handle({ type, id, payload }: Frame): void {
    switch (type) {
      case FrameType.HELLO:
        return this.#onHello(payload);
      case FrameType.OPEN:
        return this.#onOpen(id, payload);
      case FrameType.ACCEPT: {
        const pending = this.#opening.get(id);
        if (!pending) {
          this.send(FrameType.CLOSE, id); // we gave up on this open; tell the server
          return;
        }
        this.#opening.delete(id);
        this.#streams.set(id, pending.vchan);
        pending.vchan.connect(this, id, payload.readUInt32BE(0));
        pending.resolve(pending.vchan);
        return;
      }
      case FrameType.REFUSE: {
        const pending = this.#opening.get(id);
        this.#opening.delete(id);
        pending?.reject(new OpenRefused(`no vchan server on ${this.remoteDomain}:${pending.vchan.port}`));
        return;
      }
      case FrameType.DATA:
        this.#streams.get(id)?.onData(payload);
        return;
      case FrameType.CREDIT:
        this.#streams.get(id)?.onCredit(payload.readUInt32BE(0));
        return;
      case FrameType.CLOSE:
        this.#streams.get(id)?.onPeerGone();
        return;
    }
  }

  #onHello(payload: Buffer): void {
    const nonce = payload.subarray(0, 8);
    const reply = payload[8] === 1;
    if (this.#peerNonce && !this.#peerNonce.equals(nonce)) this.#dropStreams('peer restarted');
    this.#peerNonce = Buffer.from(nonce);
    if (!reply) this.send(FrameType.HELLO, 0, Buffer.concat([this.#nonce, Buffer.from([1])]));
  }

  #onOpen(id: number, payload: Buffer): void {
    const port = payload.readUInt32BE(0);
    const window = payload.readUInt32BE(4);
    const server = this.#servers.get(port);
    if (!server || server.state() !== 'waiting' || this.#streams.has(id)) {
      this.send(FrameType.REFUSE, id);
      return;
    }
    this.#servers.delete(port);
    this.#streams.set(id, server);
    this.send(FrameType.ACCEPT, id, u32(server.rings.readRing));
    server.connect(this, id, window);
    server.emit('connected');
  }

  #dropStreams(reason: string): void {
    for (const stream of [...this.#streams.values()]) stream.onPeerGone();
    this.#streams.clear();
    for (const pending of this.#opening.values()) pending.reject(new OpenRefused(reason));
    this.#opening.clear();
  }
}
