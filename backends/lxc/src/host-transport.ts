import type { Vchan, VchanListenOptions, VchanTransport } from '@odyssey/hal';
import { SocketVchanTransport } from '@odyssey/vchan';

export interface LxcHostTransportOptions {
  /** The domain's name, given how vchan names it (libvirt id or name). */
  readonly nameOf: (domain: string) => Promise<string>;
  /** The host directory of a domain's vchan sockets. */
  readonly vchanDir: (name: string) => string;
  readonly retryIntervalMs?: number;
}

/**
 * dom0's end of the domains' vchans: the socket transport, in the vchan directory of the domain
 * named. Inside the directory the domain is known by its name, which its init is given when the
 * container is defined (its libvirt id only exists once it runs).
 */
export class LxcHostTransport implements VchanTransport {
  readonly name = 'lxc-socket';

  constructor(private readonly options: LxcHostTransportOptions) {}

  async listen(remoteDomain: string, port: number, options?: VchanListenOptions): Promise<Vchan> {
    const { transport, label } = await this.#in(remoteDomain);
    return transport.listen(label, port, options);
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
