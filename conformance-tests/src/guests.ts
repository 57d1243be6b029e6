import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import type { AdminClient } from '@odyssey/client';

import { QREXEC_CLIENT_VM, QVM } from './programs.js';
import { cleanEnv, run, type Finished } from './spawn.js';

/** Running programs inside a domain and giving it qrexec services: what the guest-side checks need. */
export interface Guests {
  /** `qrexec-client-vm TARGET SERVICE` inside `vm`. */
  qrexecClientVm(vm: string, target: string, service: string, stdin?: string | Buffer): Promise<Finished>;
  /** `qvm --qrexec ARGS` inside `vm`: the Admin API as a management domain reaches it. */
  qvm(vm: string, ...args: string[]): Promise<Finished>;
  /** Installs an executable qrexec service in `vm` (its /etc/qubes-rpc). */
  installService(vm: string, service: string, script: string): Promise<void>;
}

/**
 * Guests of the process backend: its README documents a domain's environment (VCHAN_DOMAIN,
 * VCHAN_SOCKET_DIR, QREXEC_AGENT_SOCKET) and service directory under `<state dir>/run/process/<name>`,
 * so the suite can act inside a domain exactly as the domain's own programs do.
 */
export function processGuests(stateDir: string, client: AdminClient): Guests {
  const runtime = join(stateDir, 'run');
  const domainEnv = async (vm: string): Promise<NodeJS.ProcessEnv> => ({
    ...cleanEnv(),
    VCHAN_DOMAIN: (await client.call('admin.vm.property.Get', vm, 'xid')).toString().split(' ').pop(),
    VCHAN_SOCKET_DIR: join(runtime, 'vchan'),
    QREXEC_AGENT_SOCKET: join(runtime, 'process', vm, 'qrexec-agent.sock'),
    ODYSSEY_QREXEC_CLIENT: QREXEC_CLIENT_VM,
  });
  return {
    qrexecClientVm: async (vm, target, service, stdin = '') =>
      run(process.execPath, [QREXEC_CLIENT_VM, target, service], await domainEnv(vm), stdin),
    qvm: async (vm, ...args) => run(process.execPath, [QVM, '--qrexec', ...args], await domainEnv(vm)),
    installService: async (vm, service, script) => {
      const dir = join(runtime, 'process', vm, 'qubes-rpc');
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, service), script);
      await chmod(join(dir, service), 0o755);
    },
  };
}

/** The backends whose domains the suite knows how to enter; others get `unsupported` guest checks. */
export function guestsFor(backend: string, stateDir: string, client: AdminClient): Guests | undefined {
  return backend === 'process' ? processGuests(stateDir, client) : undefined;
}
