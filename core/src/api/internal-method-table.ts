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
    read: true,
    write: false,
    execute: false,
    destAdminvm: true,
    wantsArg: false,
    wantsPayload: false,
    noPolicy: true,
    handler: internal.getSystemInfo,
  },
];
