import type { Vmm } from '@odyssey/hal';
import type { QubesDbHost } from './qubesdb-host.js';

/**
 * The backend's Vmm with dom0's QubesDB served from the moment a domain
 * runs, before anything waits for its agent: upstream fills a domain's
 * database before it lets the domain run, so the domain's daemon finds it.
 */
export function withQubesDbStart(vmm: Vmm, host: QubesDbHost): Vmm {
  return new Proxy(vmm, {
    get(target, property, receiver) {
      if (property !== 'start') {
        const value: unknown = Reflect.get(target, property, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      }
      return async (name: string): Promise<void> => {
        await target.start(name);
        const { xid } = await target.state(name);
        host.serve(name, xid);
      };
    },
  });
}
