import type { InjectionToken } from 'tsyringe';
import { inject, injectable } from 'tsyringe';

import type { AfterStart } from '../lifecycle/ports.js';
import type { QrexecHost } from './qrexec-host.js';
import type { QubesDbHost } from './qubesdb-host.js';

/** dom0's QubesDB and qrexec daemons, present when the backend brought a vchan transport. */
export const HOST_TOKENS = {
  QubesDb: Symbol('QubesDbHost') as InjectionToken<QubesDbHost>,
  Qrexec: Symbol('QrexecHost') as InjectionToken<QrexecHost>,
};

/**
 * dom0 serves a domain's QubesDB from the moment it runs, before anything waits for its agent:
 * upstream fills a domain's database before it lets the domain run, so the domain's daemon finds it.
 */
@injectable()
export class ServeQubesDb implements AfterStart {
  constructor(@inject(HOST_TOKENS.QubesDb) private readonly host: QubesDbHost) {}

  async afterStart({ name, xid }: { name: string; xid: number }): Promise<void> {
    this.host.serve(name, xid);
  }
}

/**
 * Upstream's start semantics: a domain has started once its qrexec agent is connected, so a
 * client may call into it (and it out) as soon as its start returns.
 */
@injectable()
export class AwaitQrexec implements AfterStart {
  constructor(@inject(HOST_TOKENS.Qrexec) private readonly host: QrexecHost) {}

  async afterStart({ name, xid }: { name: string; xid: number }): Promise<void> {
    try {
      await this.host.connect(name, xid);
    } catch (error) {
      throw new Error(`qrexec agent of ${name} did not connect: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }
}
