import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import type { AdminClient } from '@odyssey/client';
import type { VmmCapabilities } from '@odyssey/hal';

import { Unsupported } from './check.js';

import { QREXEC_CLIENT, QREXEC_CLIENT_VM, QVM } from './programs.js';
import { cleanEnv, run, type Finished } from './spawn.js';

/** Input made inside the domain: `bytes` zero bytes, for payloads too large to hand over. */
export interface MadeInside {
  readonly zeroBytes: number;
}

/** Running programs inside a domain and giving it qrexec services: what the guest-side checks need. */
export interface Guests {
  /** `qrexec-client-vm TARGET SERVICE` inside `vm`. */
  qrexecClientVm(
    vm: string,
    target: string,
    service: string,
    stdin?: string | Buffer | MadeInside,
  ): Promise<Finished>;
  /** `qvm --qrexec ARGS` inside `vm`: the Admin API as a management domain reaches it. */
  qvm(vm: string, ...args: string[]): Promise<Finished>;
  /** Installs an executable qrexec service in `vm` (its /etc/qubes-rpc). */
  installService(vm: string, service: string, script: string): Promise<void>;
  /**
   * dom0 calls SERVICE[+ARG] in `vm` (`odyssey-qrexec-client`, upstream's
   * `qrexec-client -d VM DEFAULT:QUBESRPC SERVICE dom0`) through odysseyd's local socket.
   */
  dom0Call(vm: string, service: string, stdin?: string | Buffer): Promise<Finished>;
  /** Makes `vm` die on its own, as a guest whose kernel panics does; resolves once it was told to. */
  crash(vm: string): Promise<void>;
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
  const installService: Guests['installService'] = async (vm, service, script) => {
    const dir = join(runtime, 'process', vm, 'qubes-rpc');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, service), script);
    await chmod(join(dir, service), 0o755);
  };
  const dom0Call = dom0Caller(stateDir);
  return {
    qrexecClientVm: async (vm, target, service, stdin = '') =>
      run(
        process.execPath,
        [QREXEC_CLIENT_VM, target, service],
        await domainEnv(vm),
        typeof stdin === 'object' && 'zeroBytes' in stdin ? Buffer.alloc(stdin.zeroBytes) : stdin,
      ),
    qvm: async (vm, ...args) => run(process.execPath, [QVM, '--qrexec', ...args], await domainEnv(vm)),
    installService,
    dom0Call,
    // A process domain is its agent process; a service's parent is that agent, killed by a signal
    // its backend did not send.
    crash: async (vm) => {
      await installService(vm, 'test.Crash', '#!/bin/sh\nkill -KILL "$PPID"\n');
      await dom0Call(vm, 'test.Crash');
    },
  };
}

/** One shell word: single-quoted, with embedded single quotes closed, escaped and reopened. */
const shellWord = (word: string): string => `'${word.replaceAll("'", `'\\''`)}'`;

/**
 * Guests booting the project's image (scripts/build-guest-image.sh --flavour kvm|xen): dom0 reaches
 * them through qrexec, with odyssey-qrexec-client and the image's qubes.VMShell (a shell reading its
 * commands from stdin). Programs inside the guest (the image's qrexec-client-vm and qvm) run in
 * that shell; their stdin travels base64-encoded in the command line, so the shell's own stdin
 * stays the script.
 */
export function imageGuests(stateDir: string): Guests {
  const dom0Call = dom0Caller(stateDir);
  const runInGuest = (
    vm: string,
    argv: string[],
    stdin: string | Buffer | MadeInside = '',
  ): Promise<Finished> => {
    const input =
      typeof stdin === 'object' && 'zeroBytes' in stdin
        ? `head -c ${stdin.zeroBytes} /dev/zero`
        : `echo ${Buffer.from(stdin).toString('base64') || "''"} | base64 -d`;
    return dom0Call(vm, 'qubes.VMShell', `${input} | ${argv.map(shellWord).join(' ')}\nexit $?\n`);
  };
  return {
    qrexecClientVm: (vm, target, service, stdin = '') =>
      runInGuest(vm, ['qrexec-client-vm', target, service], stdin),
    qvm: (vm, ...args) => runInGuest(vm, ['qvm', '--qrexec', ...args]),
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
    // A kernel panic; the call never gets an answer, as the guest is gone.
    crash: async (vm) => {
      await dom0Call(vm, 'qubes.VMShell', 'echo c >/proc/sysrq-trigger\n');
    },
  };
}

/**
 * Containers of the lxc backend run the guest image's programs (backends/lxc/scripts/build-rootfs.sh),
 * so dom0 enters them as it enters image guests. A container cannot panic a kernel: its crash is its
 * qrexec agent (the service's parent) killed by a signal nobody asked for, which ends its init.
 */
export function lxcGuests(stateDir: string): Guests {
  const guests = imageGuests(stateDir);
  return {
    ...guests,
    crash: async (vm) => {
      await guests.dom0Call(vm, 'qubes.VMShell', 'kill -KILL "$PPID"\n');
    },
  };
}

/**
 * How the suite enters the domains of a backend: chosen by the guest kind the backend declares it
 * boots, never by its name. Without a vchan transport the daemon runs no qrexec, so nothing inside
 * a domain can be reached whatever it boots.
 */
export function guestsFor(
  caps: VmmCapabilities,
  hasVchan: boolean,
  stateDir: string,
  client: AdminClient,
): Guests | Unsupported {
  if (!hasVchan)
    return new Unsupported(
      'declared',
      'createBackend returned no VchanTransport, so the daemon runs no qrexec',
    );
  if (caps.guestImages.includes('agent-process')) return processGuests(stateDir, client);
  if (caps.guestImages.includes('odyssey-rootfs-lxc')) return lxcGuests(stateDir);
  if (caps.guestImages.some((kind) => kind === 'odyssey-linux-kvm' || kind === 'odyssey-linux-xen'))
    return imageGuests(stateDir);
  if (caps.guestImages.length === 0)
    return new Unsupported(
      'declared',
      'the backend declares no guest image kind it boots (guestImages is empty)',
    );
  return new Unsupported(
    'suite',
    `the suite boots none of the guest kinds declared: ${caps.guestImages.join(', ')}`,
  );
}
