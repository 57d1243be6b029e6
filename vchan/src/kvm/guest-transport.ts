import { setTimeout as sleep } from 'node:timers/promises';
import { VchanError, type VchanListenOptions, type VchanTransport } from '@odyssey/hal';
import { ADMIN_DOMAIN, ChannelMux, OpenRefused } from './channel-mux.js';
import { after } from './deadline.js';
import { GuestPort, findVirtioPort } from './guest-port.js';
import type { MuxVchan, MuxVchanRings } from './mux-vchan.js';

export interface KvmGuestTransportOptions {
  /** The port device; default: found by name under /sys/class/virtio-ports. */
  readonly devicePath?: string;
  readonly ringSize?: number;
  /**
   * How long connect() tries: it retries while there is no server, and gives up an OPEN the admin
   * domain (or the guest it relays to) does not answer; default 10 s.
   */
  readonly connectTimeoutMs?: number;
  readonly retryIntervalMs?: number;
  /**
   * Bytes written to the port and not yet taken by it beyond which the vchans writing to it wait;
   * the port is no longer read once answers to the admin domain's frames added as much again
   * (see GuestPort). Default 256 KiB.
   */
  readonly maxQueuedBytes?: number;
  readonly log?: (message: string) => void;
}

const DEFAULT_RING = 64 * 1024;

/**
 * A KVM guest's end of vchan: every vchan over the one virtio-serial port. Those with
 * domain "0" end in the admin domain; those with other domains are relayed by it when
 * its transport relays (KvmHostTransport `relay`), and time out otherwise.
 */
export class KvmGuestTransport implements VchanTransport {
  readonly name = 'kvm';
  readonly #mux: ChannelMux;
  readonly #port: GuestPort | undefined;
  readonly #ring: number;
  readonly #connectTimeoutMs: number;
  readonly #retryMs: number;

  /** Over a channel whose link the caller runs; `open()` is the guest's usual way in. */
  constructor(mux: ChannelMux, options: KvmGuestTransportOptions = {}, port?: GuestPort) {
    this.#mux = mux;
    this.#port = port;
    this.#ring = options.ringSize ?? DEFAULT_RING;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.#retryMs = options.retryIntervalMs ?? 20;
  }

  /** Opens the port and starts serving the channel. */
  static async open(options: KvmGuestTransportOptions = {}): Promise<KvmGuestTransport> {
    const devicePath = options.devicePath ?? (await findVirtioPort());
    const mux = new ChannelMux('guest', ADMIN_DOMAIN, options.log);
    const port = new GuestPort(devicePath, mux, { maxQueuedBytes: options.maxQueuedBytes });
    await port.start();
    return new KvmGuestTransport(mux, options, port);
  }

  get devicePath(): string | undefined {
    return this.#port?.devicePath;
  }

  async listen(remoteDomain: string, port: number, options?: VchanListenOptions): Promise<MuxVchan> {
    return this.#mux.listen(port, this.#rings(options), remoteDomain, options?.signal).connected;
  }

  async connect(remoteDomain: string, port: number, options?: { timeoutMs?: number }): Promise<MuxVchan> {
    // Also the OPEN's deadline: a peer that never answers must not keep the caller for ever (its
    // late ACCEPT is answered with CLOSE).
    const deadline = after(options?.timeoutMs ?? this.#connectTimeoutMs);
    let last: Error | undefined;
    for (;;) {
      try {
        return await this.#mux.open(port, this.#rings(), remoteDomain, remoteDomain, deadline);
      } catch (error) {
        if (!(error instanceof OpenRefused)) throw error;
        last = error;
      }
      if (deadline.aborted) {
        throw new VchanError(`timed out connecting to vchan ${remoteDomain}:${port}`, { cause: last });
      }
      await sleep(this.#retryMs);
    }
  }

  async close(): Promise<void> {
    if (this.#port) await this.#port.stop();
    else this.#mux.detach();
  }

  #rings(options?: VchanListenOptions): MuxVchanRings {
    return {
      readRing: Math.max(this.#ring, options?.readMin ?? 0),
      writeRing: Math.max(this.#ring, options?.writeMin ?? 0),
    };
  }
}
