import type { InjectionToken } from 'tsyringe';

import type { Clock } from './clock.js';
import type { Backend } from './lifecycle/backend.js';
import type { AfterStart, VmFiles } from './lifecycle/ports.js';
import type { Log } from './log.js';
import type { App } from './model/app.js';
import type { Saver } from './persist/saver.js';
import type { VmStorage } from './storage/vm-storage.js';

/**
 * Injection tokens of what the daemon's parts below the API share (explicit: the test transform
 * emits no decorator metadata). The API's own tokens are in api/tokens.ts.
 */
export const TOKENS = {
  App: Symbol('App') as InjectionToken<App>,
  /** The state dir: qubes.xml, per-VM dirs, pools, sockets. */
  StateDir: Symbol('StateDir') as InjectionToken<string>,
  Clock: Symbol('Clock') as InjectionToken<Clock>,
  Log: Symbol('Log') as InjectionToken<Log>,
  Backend: Symbol('Backend') as InjectionToken<Backend>,
  VmFiles: Symbol('VmFiles') as InjectionToken<VmFiles>,
  Saver: Symbol('Saver') as InjectionToken<Saver>,
  Storage: Symbol('VmStorage') as InjectionToken<VmStorage>,
  /** Registered once per step, in the order the steps run. */
  AfterStart: Symbol('AfterStart') as InjectionToken<AfterStart>,
};
