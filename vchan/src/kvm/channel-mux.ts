import { randomBytes } from 'node:crypto';
import { VchanError } from '@odyssey/hal';
import { FrameDecoder, FrameError, FrameType, encodeFrame, u32, type Frame } from './frames.js';
import { MuxVchan, type MuxVchanRings, type StreamChannel } from './mux-vchan.js';
import { stopWaitingOnAbort } from '../listen-signal.js';

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
/** The admin domain's vchan name. */
export const ADMIN_DOMAIN = '0';

/**
 * How the host connects a guest's OPEN for another guest: a stream opened on the target's
 * channel on behalf of `source` (ChannelMux.openRelayed), or a rejection (the opener sees REFUSE
 * and retries). `signal` aborts once the OPEN is given up (no answer in time, or its session
 * gone): stop waiting then.
 */
export type Relay = (
  source: string,
  target: string,
  port: number,
  signal: AbortSignal,
) => Promise<RelayedStream>;

/** A relay's stream on its target's channel. */
export interface RelayedStream {
  readonly stream: MuxVchan;
  /** The target's channel, charged with what is left of the relay once the source's end is gone. */
  readonly target: ChannelMux;
}

/** The host's relaying of one guest's OPENs, and how much of it the guest may have at once. */
export interface RelayOptions {
  readonly connect: Relay;
  /** How long an OPEN waits for the target's answer; then it is refused. */
  readonly timeoutMs: number;
  /** OPENs waiting for their target's answer; the guest's OPENs beyond are refused at once. */
  readonly maxInFlight: number;
  /**
   * Relays charged to the guest: those in flight, those it opened while its own end is on its
   * channel, and those to it whose source's end is gone while its end is still on (see
   * ChannelMux.openRelayed). The guest's OPENs beyond are refused at once, and so are relays to it
   * while it holds that many of the last kind.
   */
  readonly maxStreams: number;
}

/**
 * Every vchan of one guest, over that guest's single channel (see frames.ts for the
 * protocol): those with the admin domain, and on the host also those relayed to other
 * guests. The channel's link may come and go (the host end reconnects, the guest
 * reboots): streams die with a link, listening servers stay.
 */
export class ChannelMux implements StreamChannel {
  readonly #side: ChannelSide;
  /** This end's session; a new one when the peer's bytes made no sense, so the peer drops what it had. */
  #nonce = randomBytes(8);
  readonly #decoder = new FrameDecoder();
  // TypeScript-private rather than #: tests read the sizes of what a peer can make this end keep.
  private readonly streams = new Map<number, MuxVchan>();
  /** Waiting servers by peer domain and port. */
  readonly #servers = new Map<string, MuxVchan>();
  private readonly opening = new Map<number, PendingOpen>();
  /**
   * Guest OPENs of this session the relay is connecting, by id; aborting gives one up, and a
   * settled attempt that is no longer here belongs to a session gone.
   */
  private readonly relaying = new Map<number, AbortController>();
  /** Relays not settled yet, of this session or of one gone (until their target let go). */
  private relaysInFlight = 0;
  /** Joined relays this guest opened, while its end is on this channel. */
  private relaysJoined = 0;
  /**
   * This guest's ends of relays to it whose source's end is gone, holding what the source left for
   * it: the guest frees each by reading that or by closing. Each goes in forget(), once off the channel.
   */
  private readonly stranded = new Set<MuxVchan>();
  #send: ((bytes: Buffer) => void) | undefined;
  /** The link holds as much as it should: streams send no DATA or CREDIT, and no stream opens. */
  #held = false;
  /** Streams with something to send once the link drains, the longest waiting first. */
  private waiting = new Set<MuxVchan>();
  #peerNonce: Buffer | undefined;
  #nextId = 1;

  /**
   * @param remoteDomain on the host, the guest's vchan name; on the guest, the admin domain.
   * @param relay on the host, connects the guest's opens for other guests (none: they are refused).
   */
  constructor(
    side: ChannelSide,
    readonly remoteDomain: string,
    private readonly log: (message: string) => void = () => undefined,
    private readonly relay?: RelayOptions,
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
    this.#held = false;
    this.#decoder.reset();
    this.#peerNonce = undefined;
    this.#hello(false);
  }

  /**
   * The link holds as much as the peer should have us buffer (it is not reading): until
   * release(), streams keep their DATA and CREDIT, so their writers wait, and opens are refused.
   */
  hold(): void {
    this.#held = true;
  }

  /** The link drained: the streams that waited send again, in turn. */
  release(): void {
    this.#held = false;
    const turn = [...this.waiting];
    this.waiting.clear();
    for (const [i, stream] of turn.entries()) {
      if (this.#held) {
        // The stream that filled the link again goes after those that got no turn.
        this.waiting = new Set([...turn.slice(i), ...this.waiting]);
        return;
      }
      stream.onDrain();
    }
  }

  admit(stream: MuxVchan): boolean {
    if (!this.#held) return true;
    this.waiting.add(stream);
    return false;
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
      // What this end sends is still well framed: a new session tells the peer that its streams
      // with us are gone, and its opens in flight unanswered, instead of leaving it waiting on them.
      this.#nonce = randomBytes(8);
      this.#hello(false);
      return;
    }
    for (const frame of frames) this.#handle(frame);
  }

  /**
   * Registers a server on `port` for clients of `peer` (default: the mux's remote domain);
   * it takes the first such client that opens it.
   */
  listen(port: number, rings: MuxVchanRings, peer = this.remoteDomain, signal?: AbortSignal): BoundMuxVchan {
    const key = serverKey(peer, port);
    const vchan = new MuxVchan(peer, port, rings);
    const connected = new Promise<MuxVchan>((resolve, reject) => {
      this.#servers.set(key, vchan);
      vchan.once('connected', () => resolve(vchan));
      vchan.onDestroyWhileWaiting(() => {
        if (this.#servers.get(key) === vchan) this.#servers.delete(key);
        reject(new VchanError(`vchan server ${peer}:${port} closed before a client connected`));
      });
    });
    connected.catch(() => undefined);
    stopWaitingOnAbort(vchan, connected, signal);
    return { vchan, connected };
  }

  /**
   * One attempt to open a server on `port` across the channel; rejects with OpenRefused when
   * there is none, when the link is held, or when `signal` aborts before the peer answered.
   * `domain` is the OPEN's domain field (see frames.ts); the stream's remote domain is `peer`.
   */
  open(
    port: number,
    rings: MuxVchanRings,
    domain = ADMIN_DOMAIN,
    peer = this.remoteDomain,
    signal?: AbortSignal,
  ): Promise<MuxVchan> {
    if (!this.#send) return Promise.reject(new OpenRefused('channel not connected'));
    // Each OPEN is more for a link the peer does not read (a guest can ask for relays to it).
    if (this.#held) return Promise.reject(new OpenRefused('channel full'));
    if (signal?.aborted) return Promise.reject(new OpenRefused('gave up'));
    const id = this.#allocateId();
    const vchan = new MuxVchan(peer, port, rings);
    return new Promise<MuxVchan>((resolve, reject) => {
      // A peer that never answers must not keep the opener past its deadline; an ACCEPT that
      // comes after is answered with CLOSE, as for any open given up.
      const giveUp = (): void => {
        this.opening.delete(id);
        reject(new OpenRefused(`no answer from ${this.remoteDomain}:${port}; gave up`));
      };
      signal?.addEventListener('abort', giveUp, { once: true });
      const settled = (): void => signal?.removeEventListener('abort', giveUp);
      this.opening.set(id, {
        vchan,
        resolve: (v) => {
          settled();
          resolve(v);
        },
        reject: (error) => {
          settled();
          reject(error);
        },
      });
      this.send(
        FrameType.OPEN,
        id,
        Buffer.concat([u32(port), u32(rings.readRing), Buffer.from(domain, 'utf8')]),
      );
    });
  }

  send(type: FrameType, id: number, payload?: Buffer): void {
    this.#send?.(encodeFrame(type, id, payload));
  }

  forget(stream: MuxVchan): void {
    if (this.streams.get(stream.id) === stream) this.streams.delete(stream.id);
    this.waiting.delete(stream);
    this.stranded.delete(stream);
  }

  /**
   * One attempt, as open(), to open `port` on this guest for a relay from `source`. What is left of
   * the relay once the source's end is gone is charged to this guest. While it holds maxStreams of
   * those, relays to it are refused: a source whose slots come back as it leaves each relay to its
   * target could otherwise, with a target that never reads, make the host keep relays without bound.
   */
  async openRelayed(
    source: string,
    port: number,
    rings: MuxVchanRings,
    signal: AbortSignal,
  ): Promise<RelayedStream> {
    if (this.relay && this.stranded.size >= this.relay.maxStreams) {
      throw new OpenRefused(`${this.remoteDomain} holds as many relays left to it as it may`);
    }
    return { stream: await this.open(port, rings, source, source, signal), target: this };
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
        const pending = this.opening.get(id);
        if (!pending) {
          this.send(FrameType.CLOSE, id); // we gave up on this open; tell the server
          return;
        }
        this.opening.delete(id);
        this.streams.set(id, pending.vchan);
        pending.vchan.connect(this, id, payload.readUInt32BE(0));
        pending.resolve(pending.vchan);
        return;
      }
      case FrameType.REFUSE: {
        const pending = this.opening.get(id);
        this.opening.delete(id);
        pending?.reject(new OpenRefused(`no vchan server on ${this.remoteDomain}:${pending.vchan.port}`));
        return;
      }
      case FrameType.DATA: {
        const stream = this.streams.get(id);
        if (stream && !stream.onData(payload)) {
          this.log(`vchan ${this.remoteDomain}:${stream.port}: DATA beyond the credit granted; closed`);
        }
        return;
      }
      case FrameType.CREDIT:
        this.streams.get(id)?.onCredit(payload.readUInt32BE(0));
        return;
      case FrameType.CLOSE:
        this.streams.get(id)?.onPeerGone();
        return;
    }
  }

  #onHello(payload: Buffer): void {
    const nonce = payload.subarray(0, 8);
    const reply = payload[8] === 1;
    if (this.#peerNonce && !this.#peerNonce.equals(nonce)) this.#dropStreams('peer restarted');
    this.#peerNonce = Buffer.from(nonce);
    if (!reply) this.#hello(true);
  }

  #hello(reply: boolean): void {
    this.send(FrameType.HELLO, 0, Buffer.concat([this.#nonce, Buffer.from([reply ? 1 : 0])]));
  }

  #onOpen(id: number, payload: Buffer): void {
    const port = payload.readUInt32BE(0);
    const window = payload.readUInt32BE(4);
    const domain = payload.subarray(8).toString('utf8');
    // An id of our own space would take over one of our opens when the peer then ACCEPTs it.
    const peersId = ((id & GUEST_ID_BIT) !== 0) === (this.#side === 'host');
    if (!peersId || this.streams.has(id) || this.relaying.has(id)) {
      this.send(FrameType.REFUSE, id);
      return;
    }
    if (this.#side === 'host' && domain !== ADMIN_DOMAIN) {
      // Each relay in flight holds an entry and an OPEN on the target's channel until the target
      // answers, and each joined one two streams: a guest gets so many, then REFUSEs at once.
      const relay = this.relay;
      const inFlight = this.relaysInFlight;
      const charged = inFlight + this.relaysJoined + this.stranded.size;
      if (!relay || inFlight >= relay.maxInFlight || charged >= relay.maxStreams) {
        this.send(FrameType.REFUSE, id);
        return;
      }
      void this.#relayOpen(relay, id, port, window, domain);
      return;
    }
    // On the host every client is the guest itself; on the guest the host names the client.
    const peer = this.#side === 'host' ? this.remoteDomain : domain;
    const key = serverKey(peer, port);
    const server = this.#servers.get(key);
    if (!server || server.state() !== 'waiting') {
      this.send(FrameType.REFUSE, id);
      return;
    }
    this.#servers.delete(key);
    this.#accept(id, server, window);
    server.emit('connected');
  }

  #accept(id: number, stream: MuxVchan, window: number): void {
    this.streams.set(id, stream);
    this.send(FrameType.ACCEPT, id, u32(stream.rings.readRing));
    stream.connect(this, id, window);
  }

  /** A guest's OPEN for another guest: joins it to a stream the relay opened on the target's channel. */
  async #relayOpen(
    relay: RelayOptions,
    id: number,
    port: number,
    window: number,
    target: string,
  ): Promise<void> {
    const attempt = new AbortController();
    this.relaying.set(id, attempt);
    this.relaysInFlight++;
    const timer = setTimeout(() => attempt.abort(), relay.timeoutMs);
    let relayed: RelayedStream;
    try {
      relayed = await relay.connect(this.remoteDomain, target, port, attempt.signal);
    } catch {
      if (this.relaying.get(id) === attempt) {
        this.relaying.delete(id);
        this.send(FrameType.REFUSE, id);
      }
      return;
    } finally {
      clearTimeout(timer);
      this.relaysInFlight--;
    }
    const { stream: far, target: farChannel } = relayed;
    // The session the OPEN came in is gone: the stream would have no end on this side.
    if (this.relaying.get(id) !== attempt) {
      far.destroy();
      return;
    }
    this.relaying.delete(id);
    this.relaysJoined++;
    const near = new MuxVchan(target, port, far.rings);
    this.#accept(id, near, window);
    near.pipe(far).pipe(near);
    // One end going ends the other after what it holds is delivered: a guest killed right after
    // its last bytes still has them reach a reader that is slower than the kill. ('close' follows
    // an error.)
    for (const [end, other] of [
      [near, far],
      [far, near],
    ] as const) {
      end.on('error', () => undefined);
      end.on('close', () => other.end());
    }
    // Once both ends are off their channels, what their buffers hold has nowhere to go, and each
    // may wait on the other for ever (a write failing only once its own buffer is read), so neither
    // would close: both are destroyed.
    let on = 2;
    const off = (): void => {
      if (--on > 0) return;
      near.destroy();
      far.destroy();
    };
    far.onGone(off);
    // The relay is charged to a guest whose end is still on its channel, delivering or not: the
    // source while its end is, then the target, which alone can free what is left (by reading or
    // closing). A target that neither reads nor closes so holds its own slots, not the source's;
    // a source that neither reads nor closes holds its own, the target having closed its end.
    near.onGone(() => {
      this.relaysJoined--;
      if (on === 2) farChannel.stranded.add(far);
      off();
    });
  }

  #dropStreams(reason: string): void {
    for (const stream of [...this.streams.values()]) stream.onPeerGone();
    this.streams.clear();
    this.waiting.clear();
    // The target would keep their OPENs pending (and accept them) for a session that is gone.
    for (const attempt of this.relaying.values()) attempt.abort();
    this.relaying.clear();
    for (const pending of this.opening.values()) pending.reject(new OpenRefused(reason));
    this.opening.clear();
  }
}

function serverKey(peer: string, port: number): string {
  return `${peer}\0${port}`;
}
