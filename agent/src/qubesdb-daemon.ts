import type { VchanTransport } from '@odyssey/hal';
import { GuestQubesDb, LocalQubesDbServer, QUBESDB_LOCAL_SOCKET } from '@odyssey/qubesdb';

export interface DomainQubesDbOptions {
  readonly transport: VchanTransport;
  /** Where the domain's programs reach it; default /var/run/qubes/qubesdb.sock. */
  readonly socketPath?: string;
  readonly log?: (message: string) => void;
}

/**
 * The domain's QubesDB daemon, as upstream's qubesdb-daemon in a VM: a copy
 * of dom0's database for this domain, kept in step over vchan, served to
 * qubesdb-read and friends on the local socket (which answers once the first
 * copy has arrived).
 */
export class DomainQubesDb {
  readonly #guest: GuestQubesDb;
  readonly #local: LocalQubesDbServer;

  private constructor(guest: GuestQubesDb, local: LocalQubesDbServer) {
    this.#guest = guest;
    this.#local = local;
  }

  static async start(options: DomainQubesDbOptions): Promise<DomainQubesDb> {
    const guest = new GuestQubesDb({ transport: options.transport, log: options.log });
    const local = await LocalQubesDbServer.listen(options.socketPath ?? QUBESDB_LOCAL_SOCKET, guest.db, {
      ready: guest.ready,
    });
    guest.start();
    return new DomainQubesDb(guest, local);
  }

  /** Resolves once dom0's database has arrived. */
  get ready(): Promise<void> {
    return this.#guest.ready;
  }

  async stop(): Promise<void> {
    await this.#local.close();
    await this.#guest.stop();
  }
}
