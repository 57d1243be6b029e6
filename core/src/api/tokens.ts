import type { InjectionToken } from 'tsyringe';

import type { Backups } from '../backup/backups.js';
import type { Lifecycle } from '../lifecycle/ports.js';
import type { Dispatcher } from './dispatcher.js';
import type { MethodSpec } from './method.js';
import type { AccessControl, ApiServices } from './services.js';

/** Injection tokens of the Admin API's parts. */
export const API_TOKENS = {
  Lifecycle: Symbol('Lifecycle') as InjectionToken<Lifecycle>,
  Access: Symbol('AccessControl') as InjectionToken<AccessControl>,
  Services: Symbol('ApiServices') as InjectionToken<ApiServices>,
  Methods: Symbol('Methods') as InjectionToken<readonly MethodSpec[]>,
  Dispatcher: Symbol('Dispatcher') as InjectionToken<Dispatcher>,
  Backups: Symbol('Backups') as InjectionToken<Backups>,
};
