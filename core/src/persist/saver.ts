import type { Vm } from '../model/vm.js';

/** Persisting the app (qubes.xml); implemented by StateStore. */
export interface Saver {
  /**
   * Persists the app; resolves once a save that started after this call has
   * finished. `changed` names a VM that may have changed without an event.
   */
  save(changed?: Vm): Promise<void>;
}
