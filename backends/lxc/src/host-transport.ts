import { VchanError, type Vchan, type VchanListenOptions, type VchanTransport } from '@odyssey/hal';
import { constants } from 'node:fs';
import { chmod, open } from 'node:fs/promises';
import { O_PATH, SocketVchanTransport, vchanSocketPath } from '@odyssey/vchan';

export interface LxcHostTransportOptions {
  /** The domain's name, given how vchan names it (libvirt id or name). */
  readonly nameOf: (domain: string) => Promise<string>;
  /** The host directory of a domain's vchan sockets. */
  readonly vchanDir: (name: string) => string;
  readonly retryIntervalMs?: number;
}

/**
 * Opens to all (0666) a socket dom0 bound in a domain's directory. The domain may have put a
 * symlink in its place since the bind, and chmod(2) as root would follow it to any file of the
 * host: the name is taken without following it, and the mode set through that fd.
 */
export async function openSocketToAll(path: string): Promise<void> {
  const file = await open(path, O_PATH | constants.O_NOFOLLOW);
  try {
    if (!(await file.stat()).isSocket()) throw new Error(`${path} is no longer a socket`);
    await chmod(`/proc/self/fd/${file.fd}`, 0o666);
  } finally {
    await file.close();
  }
}

/**
 * dom0's end of the domains' vchans: the socket transport, in the vchan directory of the domain
 * named. Inside the directory the domain is known by its name, which its init is given when the
 * container is defined (its libvirt id only exists once it runs).
 */
export class LxcHostTransport implements VchanTransport {
  readonly name = 'lxc-socket';

  constructor(private readonly options: LxcHostTransportOptions) {}

  /**
   * Connecting to a UNIX socket takes write permission on it, and the domain is not root on the
   * host: dom0's server sockets are opened to all (0666) in a directory only the domain and dom0
   * can enter. The domain's connect retries while the mode is still the umask's.
   */
  async listen(remoteDomain: string, port: number, options?: VchanListenOptions): Promise<Vchan> {
    const { transport, label } = await this.#in(remoteDomain);
    const bound = await transport.bind(label, port, options);
    const path = vchanSocketPath(transport.dir, '0', label, port);
    try {
      await openSocketToAll(path);
    } catch (error) {
      // The domain took the socket's name: no client can reach this server any more.
      bound.vchan.destroy();
      throw new VchanError(`cannot open vchan server ${path} to its domain`, { cause: error });
    }
    return bound.connected;
  }

  async connect(remoteDomain: string, port: number, options?: { timeoutMs?: number }): Promise<Vchan> {
    const { transport, label } = await this.#in(remoteDomain);
    return transport.connect(label, port, options);
  }

  async #in(remoteDomain: string): Promise<{ transport: SocketVchanTransport; label: string }> {
    const label = await this.options.nameOf(remoteDomain);
    const transport = new SocketVchanTransport({
      localDomain: '0',
      dir: this.options.vchanDir(label),
      ...(this.options.retryIntervalMs ? { retryIntervalMs: this.options.retryIntervalMs } : {}),
    });
    return { transport, label };
  }
}
