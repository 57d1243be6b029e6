import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  VchanError,
  readPastGonePeer,
  timerDelay,
  type VchanListenOptions,
  type VchanTransport,
} from '@odyssey/hal';
import { ChannelMux, OpenRefused, type Relay, type RelayOptions } from './channel-mux.js';
import type { MuxVchan, MuxVchanRings } from './mux-vchan.js';
import { after, unlessAborted } from './deadline.js';
import { connectOnce } from '../unix-socket.js';

export interface KvmHostTransportOptions {
  /** The UNIX socket QEMU binds for a guest's vchan channel, by the guest's vchan name (id or name). */
  readonly channelSocket: (remoteDomain: string) => string | Promise<string>;
  /** Ring size of each direction in bytes; default 64 KiB, what qrexec asks for. */
  readonly ringSize?: number;
  /** How long connect() waits for the guest's server; default 10 s. */
  readonly connectTimeoutMs?: number;
  /** Pause between attempts while the channel or the server is not there yet. */
  readonly retryIntervalMs?: number;
  /**
   * Relay guest-to-guest vchans through this end (what Xen allows any two domains to set up
   * between themselves). Off by default; a guest only reaches others this end has used a channel
   * to (connect, listen or keepChannel()) and can bring up.
   */
  readonly relay?: boolean;
  /**
   * Relays one guest may have waiting for their target's answer (each holds an OPEN on the
   * target's channel until the target answers, or for `connectTimeoutMs`); its OPENs for other
   * guests beyond are refused at once, and its connect() retries. Default 32.
   */
  readonly maxRelaysInFlight?: number;
  /**
   * Relays one guest may be charged with in all: those in flight, those it opened while its end is
   * open, and those to it whose source's end is gone while its own is still open (bytes it has yet
   * to read, or to have read: it frees them by reading or closing). Its OPENs for other guests
   * beyond are refused at once, and so are relays to it while it holds that many of the last kind.
   * Default 256, the data ports one qrexec daemon hands out: a guest is the opening side of a
   * VM-to-VM call whose port its daemon allocated.
   */
  readonly maxRelayedStreams?: number;
  /**
   * Bytes waiting in a guest's channel socket (written, not yet taken by the kernel) beyond which
   * that guest is no longer read and the vchans writing to it wait; default 256 KiB, and at
   * least the socket's own high-water mark.
   */
  readonly maxQueuedBytes?: number;
  readonly log?: (message: string) => void;
}

interface Link {
  readonly mux: ChannelMux;
  socket: Socket | undefined;
  dialing: Promise<boolean> | undefined;
  keepUp: Promise<void> | undefined;
}

const DEFAULT_RING = 64 * 1024;
const DEFAULT_MAX_QUEUED = 256 * 1024;
const DEFAULT_MAX_RELAYS_IN_FLIGHT = 32;
const DEFAULT_MAX_RELAYED_STREAMS = 256;

/**
 * The admin domain's end of KVM vchans: every vchan to one guest is multiplexed over that
 * guest's virtio-serial channel, whose host end is a UNIX socket bound by QEMU. The socket
 * is dialled when a vchan needs it and redialled while servers wait or the channel is kept
 * (the guest may not have started yet, or may restart).
 */
export class KvmHostTransport implements VchanTransport {
  readonly name = 'kvm';
  readonly #options: KvmHostTransportOptions;
  readonly #links = new Map<string, Link>();
  readonly #ring: number;
  readonly #retryMs: number;
  readonly #connectTimeoutMs: number;
  readonly #maxQueued: number;
  readonly #kept = new Map<string, number>();
  readonly #relaying: RelayOptions | undefined;
  #closed = false;

  constructor(options: KvmHostTransportOptions) {
    this.#options = options;
    this.#ring = options.ringSize ?? DEFAULT_RING;
    this.#retryMs = options.retryIntervalMs ?? 20;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.#maxQueued = options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED;
    this.#relaying = options.relay
      ? {
          connect: this.#relay,
          // Until the target answers, the source's OPEN holds an entry here: not for longer than a connect.
          timeoutMs: timerDelay(this.#connectTimeoutMs),
          maxInFlight: options.maxRelaysInFlight ?? DEFAULT_MAX_RELAYS_IN_FLIGHT,
          maxStreams: options.maxRelayedStreams ?? DEFAULT_MAX_RELAYED_STREAMS,
        }
      : undefined;
  }

  async listen(remoteDomain: string, port: number, options?: VchanListenOptions): Promise<MuxVchan> {
    const link = this.#link(remoteDomain);
    const bound = link.mux.listen(port, this.#rings(options), remoteDomain, options?.signal);
    this.#keepLinked(remoteDomain, link);
    return bound.connected;
  }

  async connect(remoteDomain: string, port: number, options?: { timeoutMs?: number }): Promise<MuxVchan> {
    const deadline = after(options?.timeoutMs ?? this.#connectTimeoutMs);
    const link = this.#link(remoteDomain);
    let last: Error | undefined;
    for (;;) {
      if (await this.#dial(remoteDomain, link, deadline)) {
        try {
          return await link.mux.open(port, this.#rings(), undefined, undefined, deadline);
        } catch (error) {
          if (!(error instanceof OpenRefused)) throw error;
          last = error;
        }
      }
      if (deadline.aborted || this.#closed) {
        throw new VchanError(`timed out connecting to vchan ${remoteDomain}:${port}`, { cause: last });
      }
      await sleep(this.#retryMs);
    }
  }

  /**
   * Keeps the channel to `remoteDomain` connected (redialling across guest restarts) until
   * the returned function is called, so the guest can open vchans (and relays) at any time.
   */
  keepChannel(remoteDomain: string): () => void {
    this.#kept.set(remoteDomain, (this.#kept.get(remoteDomain) ?? 0) + 1);
    this.#keepLinked(remoteDomain, this.#link(remoteDomain));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = (this.#kept.get(remoteDomain) ?? 1) - 1;
      if (n > 0) this.#kept.set(remoteDomain, n);
      else this.#kept.delete(remoteDomain);
    };
  }

  /** Closes every channel socket; vchans on them become disconnected. */
  close(): void {
    this.#closed = true;
    for (const link of this.#links.values()) link.socket?.destroy();
  }

  #rings(options?: VchanListenOptions): MuxVchanRings {
    return {
      readRing: Math.max(this.#ring, options?.readMin ?? 0),
      writeRing: Math.max(this.#ring, options?.writeMin ?? 0),
    };
  }

  #link(remoteDomain: string): Link {
    let link = this.#links.get(remoteDomain);
    if (!link) {
      const mux = new ChannelMux('host', remoteDomain, this.#options.log, this.#relaying);
      link = { mux, socket: undefined, dialing: undefined, keepUp: undefined };
      this.#links.set(remoteDomain, link);
    }
    return link;
  }

  #relay: Relay = async (source, target, port, signal) => {
    // The guest names the target: a link (and a socket path to dial) for every name it makes up
    // would pile up for ever, so only guests this end already has a channel for are reached.
    const link = this.#links.get(target);
    if (!link || !(await this.#dial(target, link, signal))) throw new OpenRefused(`no channel to ${target}`);
    return link.mux.openRelayed(source, port, this.#rings(), signal);
  };

  #wanted(remoteDomain: string, link: Link): boolean {
    return !this.#closed && (link.mux.hasServers || this.#kept.has(remoteDomain));
  }

  /** Redials in the background as long as a server waits or the channel is kept, and the channel is down. */
  #keepLinked(remoteDomain: string, link: Link): void {
    link.keepUp ??= (async () => {
      while (this.#wanted(remoteDomain, link)) {
        if (!link.mux.linked) await this.#dial(remoteDomain, link);
        await sleep(link.mux.linked ? 250 : this.#retryMs * 10);
      }
    })().finally(() => {
      link.keepUp = undefined;
    });
  }

  /**
   * Frames for the guest go to its socket, where what the guest does not read piles up. Past the
   * limit, the guest's frames are no longer read (each may need an answer: a guest that never
   * reads could make us buffer answers without end) and the mux holds the streams writing to
   * it (their credit is the guest's word), until the socket drained; other guests' links go on.
   * A guest that dies meanwhile still has its last frames read: writes to a gone peer count as
   * done (readPastGonePeer), so the socket drains and reading resumes up to its end.
   */
  #throttled(socket: Socket, mux: ChannelMux): (bytes: Buffer) => void {
    // 'drain' comes only to a socket that went past its own high-water mark.
    const limit = Math.max(this.#maxQueued, socket.writableHighWaterMark);
    let held = false;
    const release = (): void => {
      held = false;
      socket.resume();
      mux.release();
    };
    return (bytes) => {
      socket.write(bytes);
      if (held || socket.writableLength < limit) return;
      held = true;
      socket.pause();
      mux.hold();
      socket.once('drain', release);
    };
  }

  /**
   * One attempt to connect the channel socket; true when the link is up, false when it is not or
   * `signal` aborted first. The socket's name may take a lookup that never ends (the VMM asked for
   * the domain's name): a connect or a relay stops waiting at its deadline, as for an unanswered
   * OPEN, instead of keeping its caller (or the source guest's relay slot) until the lookup ends.
   * The attempt itself goes on, one per channel, for whoever waits next.
   */
  #dial(remoteDomain: string, link: Link, signal?: AbortSignal): Promise<boolean> {
    if (link.mux.linked) return Promise.resolve(true);
    link.dialing ??= (async () => {
      try {
        const path = await this.#options.channelSocket(remoteDomain);
        const socket = await connectOnce(path);
        link.socket = socket;
        // The guest's frames sent before QEMU went are read, though a write met EPIPE first.
        readPastGonePeer(socket);
        link.mux.attach(this.#throttled(socket, link.mux));
        socket.on('data', (chunk: Buffer) => link.mux.receive(chunk));
        socket.on('error', () => undefined); // 'close' follows and says it all
        socket.on('close', () => {
          if (link.socket === socket) link.socket = undefined;
          link.mux.detach();
          if (this.#wanted(remoteDomain, link)) this.#keepLinked(remoteDomain, link);
        });
        return true;
      } catch {
        return false;
      }
    })().finally(() => {
      link.dialing = undefined;
    });
    return unlessAborted(link.dialing, signal, false);
  }
}
