import type { CreateBackend } from '@odyssey/hal';
import { SocketVchanTransport } from '@odyssey/vchan';
import { ProcessLayout } from './layout.js';
import { ProcessVmm } from './process-vmm.js';

export { PROCESS_CAPABILITIES } from './capabilities.js';
export { DomainProcess, type DomainExit, type DomainRecord } from './domain-process.js';
export { ProcessLayout } from './layout.js';
export { ProcessVmm, defaultAgentMain, type ProcessVmmOptions } from './process-vmm.js';

/**
 * How odysseyd loads this backend (`--backend process`). dom0's end of the vchans is domain '0'
 * on the socket directory the domains share. dom0 connects to each call's data vchan a moment
 * before the calling domain has bound it; retrying every millisecond instead of every ten keeps
 * a qrexec call at a few milliseconds.
 */
export const createBackend: CreateBackend = (context) => ({
  vmm: new ProcessVmm(context),
  vchan: new SocketVchanTransport({
    localDomain: '0',
    dir: new ProcessLayout(context.runtimeDir).vchanDir,
    retryIntervalMs: 1,
  }),
});
