import type { InjectionToken } from 'tsyringe';

import type { Dispatcher, Saver } from './api/dispatcher.js';
import type { MethodSpec } from './api/method.js';
import type { AccessControl, ApiServices, Backups, Lifecycle, VmFiles } from './api/services.js';
import type { Backend } from './lifecycle/backend.js';
import type { App } from './model/app.js';
import type { Log } from './api/server.js';
import type { VmStorage } from './storage/vm-storage.js';

/** Injection tokens of the daemon's container (explicit: the test transform emits no decorator metadata). */
export const TOKENS = {
  App: Symbol('App') as InjectionToken<App>,
  Log: Symbol('Log') as InjectionToken<Log>,
  Backend: Symbol('Backend') as InjectionToken<Backend>,
  Lifecycle: Symbol('Lifecycle') as InjectionToken<Lifecycle>,
  VmFiles: Symbol('VmFiles') as InjectionToken<VmFiles>,
  Access: Symbol('AccessControl') as InjectionToken<AccessControl>,
  Services: Symbol('ApiServices') as InjectionToken<ApiServices>,
  Methods: Symbol('Methods') as InjectionToken<readonly MethodSpec[]>,
  Saver: Symbol('Saver') as InjectionToken<Saver>,
  Dispatcher: Symbol('Dispatcher') as InjectionToken<Dispatcher>,
  Storage: Symbol('VmStorage') as InjectionToken<VmStorage>,
  Backups: Symbol('Backups') as InjectionToken<Backups>,
};
