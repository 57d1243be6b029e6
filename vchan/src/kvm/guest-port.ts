import { open, readFile, readdir, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { VchanError } from '@odyssey/hal';
import type { ChannelMux } from './channel-mux.js';
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

/**
 * The guest end of the channel: the virtio-serial port, opened once read-write for the
 * guest's lifetime (data the host sends while the port is closed is lost). A read of 0
 * bytes means the host end is not connected: the link is down until data arrives again.
 * Reads and writes block in libuv's thread pool, as character devices are not pollable
 * by Node; give the process a bigger pool (UV_THREADPOOL_SIZE) if it does much file I/O.
 */
export class GuestPort {
  #handle: FileHandle | undefined;
  #queue: Buffer[] = [];
  #writing = false;
  #stopped = false;
  #reader: Promise<void> | undefined;

  constructor(
    readonly devicePath: string,
    private readonly mux: ChannelMux,
  ) {}

  async start(): Promise<void> {
    this.#handle = await open(this.devicePath, 'r+');
    this.#reader = this.#readLoop();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.mux.detach();
    await this.#handle?.close();
    await this.#reader?.catch(() => undefined);
  }

  #send = (bytes: Buffer): void => {
    this.#queue.push(bytes);
    if (!this.#writing) void this.#flush();
  };

  async #flush(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queue.length > 0 && !this.#stopped) {
        const batch = Buffer.concat(this.#queue.splice(0));
        let offset = 0;
        while (offset < batch.length) {
          const { bytesWritten } = await (this.#handle as FileHandle).write(
            batch,
            offset,
            batch.length - offset,
            null,
          );
          offset += bytesWritten;
        }
      }
    } catch {
      // The host end went away mid-write; the read side notices and takes the link down.
      this.#queue = [];
    } finally {
      this.#writing = false;
    }
  }

  async #readLoop(): Promise<void> {
    const handle = this.#handle as FileHandle;
    while (!this.#stopped) {
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
      if (!this.mux.linked) this.mux.attach(this.#send);
      this.mux.receive(buffer.subarray(0, bytesRead));
    }
  }
}
