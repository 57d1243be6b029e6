import type { Vmm } from '@odyssey/hal';
import type { QrexecHost } from './qrexec-host.js';

/**
 * The backend's Vmm with upstream's start semantics: a domain has started
 * once its qrexec agent is connected, so a client may call into it (and it
 * out) as soon as its start returns. A domain whose agent never answers is
 * killed and its start fails.
 */
export function withQrexecStart(vmm: Vmm, host: QrexecHost): Vmm {
  return new Proxy(vmm, {
    get(target, property, receiver) {
      if (property !== 'start') {
        const value: unknown = Reflect.get(target, property, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      }
      return async (name: string): Promise<void> => {
        await target.start(name);
        const { xid } = await target.state(name);
        try {
          await host.connect(name, xid);
        } catch (error) {
          await target.kill(name).catch(() => undefined);
          throw new Error(`qrexec agent of ${name} did not connect: ${(error as Error).message}`, {
            cause: error,
          });
        }
      };
    },
  });
}
