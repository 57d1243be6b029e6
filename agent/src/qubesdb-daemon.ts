import type { VchanTransport } from '@odyssey/hal';
import { GuestQubesDb, LocalQubesDbServer, QUBESDB_LOCAL_SOCKET, readOnlySocketPath } from '@odyssey/qubesdb';

export interface DomainQubesDbOptions {
  readonly transport: VchanTransport;
  /** Where the domain's programs reach it; default /var/run/qubes/qubesdb.sock (and qubesdb.ro.sock read-only). */
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
  readonly #local: readonly LocalQubesDbServer[];

  private constructor(guest: GuestQubesDb, local: readonly LocalQubesDbServer[]) {
    this.#guest = guest;
    this.#local = local;
  }

  static async start(options: DomainQubesDbOptions): Promise<DomainQubesDb> {
    const guest = new GuestQubesDb({ transport: options.transport, log: options.log });
    const path = options.socketPath ?? QUBESDB_LOCAL_SOCKET;
    const local = [
      await LocalQubesDbServer.listen(path, guest.db, { ready: guest.ready }),
      await LocalQubesDbServer.listen(readOnlySocketPath(path), guest.db, {
        ready: guest.ready,
        readOnly: true,
      }),
    ];
    guest.start();
    return new DomainQubesDb(guest, local);
  }

  /** A key's value as text, if dom0's database has it. */
  read(path: string): string | undefined {
    return this.#guest.db.read(path)?.toString('utf8');
  }

  /** Every key under `prefix` with its value as text, in key order. */
  entries(prefix: string): [string, string][] {
    return this.#guest.db.multiread(prefix).map(([path, value]) => [path, value.toString('utf8')]);
  }

  /** Resolves once dom0's database has arrived. */
  get ready(): Promise<void> {
    return this.#guest.ready;
  }

  async stop(): Promise<void> {
    await Promise.all(this.#local.map((server) => server.close()));
    await this.#guest.stop();
  }
}
