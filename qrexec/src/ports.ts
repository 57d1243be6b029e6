import { MAX_DATA_PORTS, VCHAN_BASE_DATA_PORT } from './constants.js';

/**
 * Data vchan ports of one domain's daemon (reference §4.2). Toward another
 * VM only every second port is used, odd or even by which domain id is
 * larger, so the two domains' daemons never hand out the same port for one pair.
 */
export class PortAllocator {
  readonly #owner = new Map<number, number>();

  constructor(private readonly domainId: number) {}

  /** A free port for a data vchan with `connectDomain`, or undefined when all are taken. */
  allocate(connectDomain: number): number | undefined {
    const [first, step] = connectDomain === 0 ? [0, 1] : [connectDomain > this.domainId ? 1 : 0, 2];
    for (let i = first; i < MAX_DATA_PORTS; i += step) {
      const port = VCHAN_BASE_DATA_PORT + i;
      if (!this.#owner.has(port)) {
        this.#owner.set(port, connectDomain);
        return port;
      }
    }
    return undefined;
  }

  /** Frees a port; a release naming another peer than the allocation is ignored, as upstream does. */
  release(port: number, connectDomain: number): boolean {
    if (this.#owner.get(port) !== connectDomain) return false;
    this.#owner.delete(port);
    return true;
  }

  isInUse(port: number): boolean {
    return this.#owner.has(port);
  }
}
