import { createServer, type Server, type Socket } from 'node:net';
import { rm } from 'node:fs/promises';

/**
 * Where VirtualBox's end of a serial port's host pipe meets dom0's vchan transport. libvirt's vbox
 * driver sets the port's mode to host pipe but not to server, so VirtualBox connects to the pipe as
 * a client when the VM powers on; `KvmHostTransport` dials its channel as a client too, as it dials
 * QEMU's socket. So dom0 listens at `vboxPath` for VirtualBox, and only while VirtualBox is
 * connected also at `dom0Path`, joining the two connections byte for byte: dom0's transport finds
 * no socket while the VM is off, as with a KVM guest that is down.
 */
export class PipeMeeting {
  #vbox: Socket | undefined;
  #dom0: Socket | undefined;
  #dom0Server: Server | undefined;
  #closed = false;

  private constructor(
    private readonly vboxServer: Server,
    private readonly dom0Path: string,
  ) {}

  static async open(vboxPath: string, dom0Path: string): Promise<PipeMeeting> {
    await rm(vboxPath, { force: true });
    const server = createServer();
    const meeting = new PipeMeeting(server, dom0Path);
    server.on('connection', (socket) => void meeting.#onVirtualBox(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(vboxPath, () => resolve());
    });
    // A domain's pipe must not keep odysseyd alive.
    server.unref();
    return meeting;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.vboxServer.close();
    this.#vbox?.destroy();
    await this.#stopDom0Side();
  }

  /** A (re)started VM: it replaces any earlier connection, and dom0's side opens for it. */
  async #onVirtualBox(socket: Socket): Promise<void> {
    this.#vbox?.destroy();
    await this.#stopDom0Side();
    if (this.#closed) {
      socket.destroy();
      return;
    }
    this.#vbox = socket;
    socket.on('error', () => undefined); // 'close' follows
    socket.on('close', () => {
      if (this.#vbox !== socket) return;
      this.#vbox = undefined;
      void this.#stopDom0Side();
    });
    await rm(this.dom0Path, { force: true });
    const server = createServer((dom0) => this.#onDom0(dom0));
    this.#dom0Server = server;
    server.listen(this.dom0Path);
    server.unref();
  }

  #onDom0(dom0: Socket): void {
    const vbox = this.#vbox;
    if (!vbox) {
      dom0.destroy();
      return;
    }
    // One dom0 end at a time, as one program holds a virtio-serial channel.
    this.#dom0?.destroy();
    this.#dom0 = dom0;
    dom0.on('error', () => undefined);
    dom0.on('close', () => {
      if (this.#dom0 === dom0) this.#dom0 = undefined;
      dom0.unpipe(vbox);
      vbox.unpipe(dom0);
    });
    dom0.pipe(vbox, { end: false });
    vbox.pipe(dom0, { end: false });
  }

  async #stopDom0Side(): Promise<void> {
    this.#dom0?.destroy();
    this.#dom0 = undefined;
    const server = this.#dom0Server;
    this.#dom0Server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(this.dom0Path, { force: true });
  }
}
