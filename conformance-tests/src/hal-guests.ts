import { randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

import type { DomainSpec, GuestImageKind, VchanTransport, VirtMode, VmmCapabilities } from '@odyssey/hal';

import { Unsupported } from './check.js';
import { agentRunUntilGone } from './hal-agent.js';
import { QREXEC_CLIENT_VM } from './programs.js';
import { script } from './repo-scripts.js';

/** What the guest does once booted. */
export type GuestBehaviour = 'run' | 'power-off' | 'crash';

/**
 * A guest for the hal category: the DomainSpec of a guest of the kind the backend declares, and
 * how to make one stop on its own (through no Vmm call), so its stop is seen only in events().
 */
export interface HalGuest {
  /** The kind booted, or why no guest of a kind the suite makes runs (specs are then bare, no agent inside). */
  readonly kind: GuestImageKind | Unsupported;
  /**
   * The shell command that runs qrexec-client-vm inside a running guest of this kind, so a domain
   * makes a call of its own (absent when no guest of a kind the suite makes runs).
   */
  readonly clientVm?: string;
  /** The spec of domain `name`; `behaviour` is how that boot ends (where the kind cannot, `run`). */
  spec(name: string, behaviour: GuestBehaviour): Promise<DomainSpec>;
  /**
   * How a guest of this kind stops by itself: `boot` (its spec's behaviour does it), `act` (the
   * suite makes the running domain `name`, hypervisor id `xid`, do it), or why it cannot.
   */
  readonly selfStop:
    | { readonly by: 'boot'; readonly crash: string }
    | {
        readonly by: 'act';
        /** What the crash is, for the report. */
        readonly crash: string;
        act(name: string, xid: number, how: 'power-off' | 'crash'): Promise<void>;
      }
    | { readonly by: 'none'; readonly why: Unsupported };
}

/** One uuid per domain name for the whole run, as a qube keeps its uuid across starts. */
const uuids = new Map<string, string>();
const uuidOf = (name: string): string => {
  const known = uuids.get(name) ?? randomUUID();
  uuids.set(name, known);
  return known;
};

const baseSpec = (name: string, virtMode: VirtMode): DomainSpec => ({
  name,
  uuid: uuidOf(name),
  memoryMiB: 400,
  maxMemoryMiB: 0,
  vcpus: 1,
  virtMode,
  volumes: [],
  debug: false,
});

/** The argv of every process, to find a process domain's agent from outside its backend. */
async function findAgent(runtimeDir: string, xid: number): Promise<number | undefined> {
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = await readFile(join('/proc', entry, 'cmdline'), 'utf8').then(
      (s) => s.split('\0'),
      () => [] as string[],
    );
    const at = argv.indexOf('--domain-id');
    if (at >= 0 && argv[at + 1] === String(xid) && argv.some((a) => a.startsWith(runtimeDir)))
      return Number(entry);
  }
  return undefined;
}

/**
 * `agent-process`: the domain is an agent process under the backend's runtime dir, found by its
 * `--domain-id`; SIGTERM is its poweroff (it exits 0), SIGKILL a crash, sent by the suite and
 * not by the backend.
 */
function agentProcessGuest(runtimeDir: string, virtMode: VirtMode): HalGuest {
  return {
    kind: 'agent-process',
    // A process domain runs the host's programs, with its agent's environment (the process
    // backend's README): the suite's own build of the program is what it has.
    clientVm: [process.execPath, QREXEC_CLIENT_VM].map((w) => `'${w.replaceAll("'", `'\\''`)}'`).join(' '),
    spec: async (name) => baseSpec(name, virtMode),
    selfStop: {
      by: 'act',
      crash: 'its process was killed by SIGKILL',
      act: async (name, xid, how) => {
        const pid = await findAgent(runtimeDir, xid);
        if (pid === undefined) throw new Error(`no agent process with --domain-id ${xid} for ${name}`);
        process.kill(pid, how === 'power-off' ? 'SIGTERM' : 'SIGKILL');
      },
    },
  };
}

/**
 * The project's Linux image (scripts/build-guest-image.sh): its initramfs has busybox, so the
 * kernel command line picks how a boot ends. `rdinit=/bin/poweroff -- -f` powers off at once;
 * an init that exits is a kernel panic: on Xen `/bin/true` (the hypervisor sees the panic), on kvm
 * the image's `/sbin/odyssey-crash`, which first loads the pvpanic driver that tells QEMU. The
 * console and panic parameters are given first so the backend appends nothing after `--` (the
 * init's arguments).
 */
function linuxImageGuest(kind: 'odyssey-linux-kvm' | 'odyssey-linux-xen', virtMode: VirtMode): HalGuest {
  const flavour = kind === 'odyssey-linux-kvm' ? 'kvm' : 'xen';
  // kvm: pvpanic reports the panic; panic=-1 still ends a domain without it (as a reboot).
  const base = flavour === 'kvm' ? 'console=ttyS0 panic=-1' : 'console=hvc0';
  const ends: Record<GuestBehaviour, string> = {
    run: base,
    'power-off': `${base} rdinit=/bin/poweroff -- -f`,
    crash: `${base} rdinit=${flavour === 'kvm' ? '/sbin/odyssey-crash' : '/bin/true'}`,
  };
  let image: Promise<{ kernel: string; initramfs: string }> | undefined;
  const build = async () => {
    const prebuilt = flavour === 'xen' ? process.env['ODYSSEY_XEN_GUEST_IMAGE'] : undefined;
    if (prebuilt) return { kernel: join(prebuilt, 'vmlinuz'), initramfs: join(prebuilt, 'initramfs') };
    const out = await script('build-guest-image.sh', [
      '--flavour',
      flavour,
      '--cache-dir',
      process.env['ODYSSEY_GUEST_CACHE'] ?? '/var/cache/odyssey/guest',
    ]);
    if (!out['kernel'] || !out['initramfs']) throw new Error('build-guest-image.sh named no kernel');
    return { kernel: out['kernel'], initramfs: out['initramfs'] };
  };
  return {
    kind,
    clientVm: 'qrexec-client-vm',
    spec: async (name, behaviour) => {
      image ??= build();
      const { kernel, initramfs } = await image;
      return { ...baseSpec(name, virtMode), kernel: { kernel, initramfs, cmdline: ends[behaviour] } };
    },
    selfStop: { by: 'boot', crash: 'its kernel panicked' },
  };
}

/** The data port the suite's stop command runs on; the self-stopping domains run nothing else. */
const SELF_STOP_PORT = 700;

/**
 * `odyssey-rootfs-lxc`: a container on the root tree the lxc backend is configured with
 * (ODYSSEY_LXC_ROOTFS, built by backends/lxc/scripts/build-rootfs.sh; the suite's own instance
 * gets it as odysseyd does), so the spec names no kernel and no volume. Its init is fixed, so a
 * boot cannot be told how to end: the suite asks the container's agent over its control vchan, as
 * dom0 asks any agent. Power-off is SIGTERM to the init (pid 1), which passes it to the agent and
 * ends with its status 0; a crash is SIGKILL to the agent (the command's parent) by nobody the
 * backend knows of, which ends the init with status 137.
 */
function rootfsLxcGuest(virtMode: VirtMode, vchan: () => VchanTransport | undefined): HalGuest {
  return {
    kind: 'odyssey-rootfs-lxc',
    clientVm: 'qrexec-client-vm',
    spec: async (name) => baseSpec(name, virtMode),
    selfStop: vchan()
      ? {
          by: 'act',
          crash: 'its agent was killed by SIGKILL, ending its init',
          act: async (name, xid, how) => {
            const transport = vchan();
            if (!transport) throw new Error(`the backend's VchanTransport is gone: cannot reach ${name}`);
            const command = how === 'power-off' ? 'kill -TERM 1' : 'kill -KILL "$PPID"';
            await agentRunUntilGone(transport, xid, SELF_STOP_PORT, command);
          },
        }
      : {
          by: 'none',
          why: new Unsupported(
            'declared',
            'createBackend returned no VchanTransport, so no container can be asked to stop itself',
          ),
        },
  };
}

/** A backend that boots nothing the suite makes: the hal lifecycle runs on specs without a guest. */
function noGuest(virtMode: VirtMode, why: Unsupported): HalGuest {
  return {
    kind: why,
    spec: async (name) => baseSpec(name, virtMode),
    selfStop: { by: 'none', why },
  };
}

/**
 * The guest for the first kind the backend declares that the suite can make; `vchan` is the
 * current instance's transport (a reopened backend has a new one).
 */
export function halGuestFor(
  caps: VmmCapabilities,
  runtimeDir: string,
  vchan: () => VchanTransport | undefined,
  virtMode?: string,
): HalGuest {
  const mode = (virtMode as VirtMode | undefined) ?? caps.virtModes[0] ?? 'pvh';
  for (const kind of caps.guestImages) {
    if (kind === 'agent-process') return agentProcessGuest(runtimeDir, mode);
    if (kind === 'odyssey-linux-kvm' || kind === 'odyssey-linux-xen') return linuxImageGuest(kind, mode);
    if (kind === 'odyssey-rootfs-lxc') return rootfsLxcGuest(mode, vchan);
  }
  if (caps.guestImages.length === 0)
    return noGuest(
      mode,
      new Unsupported('declared', 'the backend declares no guest image kind, so no guest runs inside'),
    );
  return noGuest(
    mode,
    new Unsupported(
      'suite',
      `the suite makes no hal guest of the kinds declared: ${caps.guestImages.join(', ')}`,
    ),
  );
}
