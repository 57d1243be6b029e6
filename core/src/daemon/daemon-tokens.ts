import type { InjectionToken } from 'tsyringe';

import type { Backend } from '@odyssey/hal';
import type { HostInfo } from '../model/app.js';

/** What the composition root takes from outside; a test registers its own in Daemon.start's container. */
export const DAEMON_TOKENS = {
  /** The backend's Vmm and its dom0 vchan transport. */
  Backend: Symbol('CreatedBackend') as InjectionToken<Backend>,
  /** The host's memory and CPUs, as the model reports them. */
  Host: Symbol('HostInfo') as InjectionToken<HostInfo>,
};
