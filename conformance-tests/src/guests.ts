import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import type { AdminClient } from '@odyssey/client';

import { Unsupported } from './check.js';
import { QREXEC_CLIENT, QREXEC_CLIENT_VM, QVM } from './programs.js';
import { cleanEnv, run, type Finished } from './spawn.js';

/** Running programs inside a domain and giving it qrexec services: what the guest-side checks need. */
export interface Guests {
  /** `qrexec-client-vm TARGET SERVICE` inside `vm`. */
  qrexecClientVm(vm: string, target: string, service: string, stdin?: string | Buffer): Promise<Finished>;
  /** `qvm --qrexec ARGS` inside `vm`: the Admin API as a management domain reaches it. */
  qvm(vm: string, ...args: string[]): Promise<Finished>;
  /** Installs an executable qrexec service in `vm` (its /etc/qubes-rpc). */
  installService(vm: string, service: string, script: string): Promise<void>;
  /**
   * dom0 calls SERVICE[+ARG] in `vm` (`odyssey-qrexec-client`, upstream's
   * `qrexec-client -d VM DEFAULT:QUBESRPC SERVICE dom0`) through odysseyd's local socket.
   */
  dom0Call(vm: string, service: string, stdin?: string | Buffer): Promise<Finished>;
}

/** odyssey-qrexec-client on the local sockets odysseyd serves in `<state dir>/run`. */
function dom0Caller(stateDir: string): Guests['dom0Call'] {
  return (vm, service, stdin = '') =>
    run(
      process.execPath,
      [QREXEC_CLIENT, '--socket-dir', join(stateDir, 'run'), vm, service],
      cleanEnv(),
      stdin,
    );
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
    dom0Call: dom0Caller(stateDir),
  };
}

/**
 * Guests of the kvm backend: dom0 reaches them only through qrexec, with odyssey-qrexec-client and
 * the image's one service, qubes.VMShell (a shell reading its commands from stdin). The image
 * (scripts/build-guest-image.sh) ships the agent alone: no qrexec-client-vm and no qvm, so
 * domain-initiated calls cannot be made from inside a kvm guest.
 */
export function kvmGuests(stateDir: string): Guests {
  const dom0Call = dom0Caller(stateDir);
  return {
    qrexecClientVm: () =>
      Promise.reject(
        new Unsupported(
          'the kvm guest image ships only the qrexec agent, no qrexec-client-vm: calls from inside a kvm guest ' +
            'cannot be made (dom0 → guest calls are checked by qrexec.dom0-to-vm-*)',
        ),
      ),
    qvm: () =>
      Promise.reject(
        new Unsupported(
          'the kvm guest image ships neither qvm nor qrexec-client-vm (only the agent bundle and busybox), ' +
            'so a kvm guest cannot act as a management domain',
        ),
      ),
    installService: async (vm, service, script) => {
      const file = `/etc/qubes-rpc/${service}`;
      const body = script.endsWith('\n') ? script : `${script}\n`;
      const commands =
        `mkdir -p /etc/qubes-rpc && cat >${file} <<'ODYSSEY_EOF'\n${body}ODYSSEY_EOF\n` +
        `chmod 755 ${file}\n`;
      const done = await dom0Call(vm, 'qubes.VMShell', commands);
      if (done.code !== 0)
        throw new Error(
          `installing ${service} in ${vm} through qubes.VMShell: exit ${done.code} ${done.stderr}`,
        );
    },
    dom0Call,
  };
}

/** The backends whose domains the suite knows how to enter; others get `unsupported` guest checks. */
export function guestsFor(backend: string, stateDir: string, client: AdminClient): Guests | undefined {
  if (backend === 'process') return processGuests(stateDir, client);
  if (backend === 'kvm') return kvmGuests(stateDir);
  return undefined;
}
