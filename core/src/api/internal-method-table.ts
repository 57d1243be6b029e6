import type { MethodSpec } from './method.js';
import { internal } from './methods/internal.js';

/**
 * Methods of the internal socket (upstream's qubesd.internal.sock): for dom0's
 * own services such as the qrexec policy daemon, never exposed to domains.
 */
export const INTERNAL_METHODS: readonly MethodSpec[] = [
  {
    name: 'internal.GetSystemInfo',
    scope: 'global',
    access: 'r',
    dest: 'dom0',
    arg: 'none',
    payload: 'none',
    noPolicy: true,
    handler: internal.getSystemInfo,
  },
];
