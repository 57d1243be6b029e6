import type { VchanTransport } from '@odyssey/hal';
import type { QubesDb } from './database.js';
import { serveDom0Session } from './dom0-session.js';
import { QUBESDB_VCHAN_PORT } from './protocol.js';

export interface Dom0QubesDbServerOptions {
  readonly transport: VchanTransport;
  /** The domain's vchan address (its domain id). */
  readonly domain: string;
  readonly db: QubesDb;
  readonly log?: (message: string) => void;
}

/** Ring sizes upstream's dom0 daemon asks for: a whole message always fits. */
const RING = 4096;

/**
 * dom0's QubesDB server for one running domain: listens on the domain's
 * QubesDB port, serves the domain's daemon, and listens again when that
 * connection ends (the domain's daemon restarted), until stop().
 */
export class Dom0QubesDbServer {
  readonly #options: Dom0QubesDbServerOptions;
  readonly #stopping = new AbortController();
  readonly #loop: Promise<void>;
  #current: { destroy(): void } | undefined;

  constructor(options: Dom0QubesDbServerOptions) {
    this.#options = options;
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    this.#stopping.abort();
    this.#current?.destroy();
    await this.#loop;
  }

  async #run(): Promise<void> {
    const { transport, domain, db } = this.#options;
    const log = (message: string): void => this.#options.log?.(`qubesdb ${domain}: ${message}`);
    const signal = this.#stopping.signal;
    while (!signal.aborted) {
      let vchan;
      try {
        vchan = await transport.listen(domain, QUBESDB_VCHAN_PORT, { readMin: RING, writeMin: RING, signal });
      } catch (error) {
        if (!signal.aborted) log(`cannot listen: ${(error as Error).message}`);
        return;
      }
      this.#current = vchan;
      const error = await serveDom0Session(vchan, db, { log });
      this.#current = undefined;
      if (error && !signal.aborted) log(`connection closed: ${error.message}`);
    }
  }
}
