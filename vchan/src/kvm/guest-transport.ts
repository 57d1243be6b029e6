import { setTimeout as sleep } from 'node:timers/promises';
import { VchanError, type VchanListenOptions, type VchanTransport } from '@odyssey/hal';
import { ADMIN_DOMAIN, ChannelMux, OpenRefused } from './channel-mux.js';
import { GuestPort, findVirtioPort } from './guest-port.js';
import type { MuxVchan, MuxVchanRings } from './mux-vchan.js';

export interface KvmGuestTransportOptions {
  /** The port device; default: found by name under /sys/class/virtio-ports. */
  readonly devicePath?: string;
  readonly ringSize?: number;
  readonly connectTimeoutMs?: number;
  readonly retryIntervalMs?: number;
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
    const port = new GuestPort(devicePath, mux);
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
    const deadline = Date.now() + (options?.timeoutMs ?? this.#connectTimeoutMs);
    for (;;) {
      try {
        return await this.#mux.open(port, this.#rings(), remoteDomain, remoteDomain);
      } catch (error) {
        if (!(error instanceof OpenRefused)) throw error;
        if (Date.now() >= deadline) {
          throw new VchanError(`timed out connecting to vchan ${remoteDomain}:${port}`, { cause: error });
        }
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
