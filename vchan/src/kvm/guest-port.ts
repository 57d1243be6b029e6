import { open, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { VchanError } from '@odyssey/hal';
import type { ChannelMux } from './channel-mux.js';
import { HEADER_SIZE, MAX_DATA } from './frames.js';
import { KVM_VCHAN_PORT_NAME } from './port-name.js';

/** The /dev node of the virtio-serial port named `name` (e.g. /dev/vport0p1). */
export async function findVirtioPort(
  name = KVM_VCHAN_PORT_NAME,
  sysDir = '/sys/class/virtio-ports',
): Promise<string> {
  const entries = await readdir(sysDir).catch(() => [] as string[]);
  for (const entry of entries) {
    const portName = await readFile(join(sysDir, entry, 'name'), 'utf8').catch(() => '');
    if (portName.trim() === name) return join('/dev', entry);
  }
  throw new VchanError(`no virtio-serial port named ${name} in ${sysDir} (is virtio_console loaded?)`);
}

/** How often the guest looks for the host end again while it is not connected. */
const HOST_POLL_MS = 100;
const READ_SIZE = 256 * 1024;
const DEFAULT_MAX_QUEUED = 256 * 1024;

/** The part of a FileHandle the port uses: a test plays the device with its own. */
export interface PortHandle {
  read(buffer: Buffer, offset: number, length: number, position: null): Promise<{ bytesRead: number }>;
  write(buffer: Buffer, offset: number, length: number, position: null): Promise<{ bytesWritten: number }>;
  close(): Promise<void>;
}

export interface GuestPortOptions {
  /**
   * Bytes written to the port and not yet taken by it beyond which the vchans writing to it wait;
   * the host is no longer read once answers to its frames added as much again. Both until the
   * port took all of it. Default 256 KiB.
   */
  readonly maxQueuedBytes?: number;
  /** Opens the device read-write; default fs.open. */
  readonly openDevice?: (path: string) => Promise<PortHandle>;
}

/**
 * The guest end of the channel: the virtio-serial port, opened once read-write for the
 * guest's lifetime (data the host sends while the port is closed is lost). A read of 0
 * bytes means the host end is not connected: the link is down until data arrives again.
 * Reads and writes block in libuv's thread pool, as character devices are not pollable
 * by Node; give the process a bigger pool (UV_THREADPOOL_SIZE) if it does much file I/O.
 *
 * The port takes frames only as fast as the host reads its end, and a host that does not read
 * must not make the guest buffer without end (see #send).
 */
export class GuestPort {
  #handle: PortHandle | undefined;
  #queue: Buffer[] = [];
  // TypeScript-private rather than #: tests read what a host that does not read makes the guest keep.
  /** Bytes handed to the port and not yet taken by it: queued, or in a write under way. */
  private queuedBytes = 0;
  /** Past this, the mux holds its streams' DATA and CREDIT. */
  readonly #holdAt: number;
  /** Past this, the host is not read: only answers to its frames can take the queue there. */
  readonly #stopReadingAt: number;
  readonly #openDevice: (path: string) => Promise<PortHandle>;
  #holding = false;
  /** While the host is not read: resolves once the port drained, or stopped. */
  #paused: { readonly drained: Promise<void>; readonly resume: () => void } | undefined;
  #writing = false;
  #stopped = false;
  #reader: Promise<void> | undefined;

  constructor(
    readonly devicePath: string,
    private readonly mux: ChannelMux,
    options: GuestPortOptions = {},
  ) {
    const limit = options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED;
    this.#holdAt = limit;
    // Held streams still finish the frame that crossed the limit.
    this.#stopReadingAt = 2 * limit + HEADER_SIZE + MAX_DATA;
    this.#openDevice = options.openDevice ?? ((path) => open(path, 'r+'));
  }

  async start(): Promise<void> {
    this.#handle = await this.#openDevice(this.devicePath);
    this.#reader = this.#readLoop();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#paused?.resume();
    this.mux.detach();
    await this.#handle?.close();
    await this.#reader?.catch(() => undefined);
  }

  /**
   * Frames for the host go to the port. Past the first limit the mux holds the streams writing to
   * it (their credit is the peer's word), so they add no more, but the host is still read: its
   * end stops reading us when we do not read it (KvmHostTransport), and if both ends waited for
   * the other to read first, neither would again. What reaches the queue then is only answers to
   * the host's frames (REFUSE, ACCEPT, CLOSE): a host that sends OPENs and never reads the answers
   * takes it past the second limit, and is no longer read.
   */
  #send = (bytes: Buffer): void => {
    this.#queue.push(bytes);
    this.queuedBytes += bytes.length;
    if (!this.#writing) void this.#flush();
    if (!this.#holding && this.queuedBytes >= this.#holdAt) {
      this.#holding = true;
      this.mux.hold();
    }
    if (!this.#paused && this.queuedBytes >= this.#stopReadingAt) {
      let resume = (): void => undefined;
      const drained = new Promise<void>((resolve) => (resume = resolve));
      this.#paused = { drained, resume };
    }
  };

  async #flush(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queue.length > 0 && !this.#stopped) {
        const batch = Buffer.concat(this.#queue.splice(0));
        let offset = 0;
        while (offset < batch.length) {
          const { bytesWritten } = await (this.#handle as PortHandle).write(
            batch,
            offset,
            batch.length - offset,
            null,
          );
          offset += bytesWritten;
          this.queuedBytes -= bytesWritten;
        }
      }
    } catch {
      // The host end went away mid-write; the read side notices and takes the link down.
      this.#queue = [];
      this.queuedBytes = 0;
    } finally {
      this.#writing = false;
    }
    if (this.queuedBytes === 0 && !this.#stopped) this.#drained();
  }

  /** The port took everything: the host is read again, and the streams that waited send. */
  #drained(): void {
    const paused = this.#paused;
    this.#paused = undefined;
    paused?.resume();
    if (!this.#holding) return;
    this.#holding = false;
    this.mux.release();
  }

  async #readLoop(): Promise<void> {
    const handle = this.#handle as PortHandle;
    while (!this.#stopped) {
      if (this.#paused) {
        await this.#paused.drained;
        continue;
      }
      const buffer = Buffer.allocUnsafe(READ_SIZE);
      let bytesRead: number;
      try {
        ({ bytesRead } = await handle.read(buffer, 0, READ_SIZE, null));
      } catch (error) {
        if (this.#stopped) return;
        throw error;
      }
      if (bytesRead === 0) {
        if (this.mux.linked) this.mux.detach();
        await sleep(HOST_POLL_MS);
        continue;
      }
      if (!this.mux.linked) {
        this.mux.attach(this.#send);
        // A new session while the port is still full (the host end came back while writers
        // waited): its streams wait too.
        if (this.#holding) this.mux.hold();
      }
      this.mux.receive(buffer.subarray(0, bytesRead));
    }
  }
}
