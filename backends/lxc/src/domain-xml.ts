import { join } from 'node:path';
import type { DomainSpec } from '@odyssey/hal';
import { END_ON_ANY_STOP, attrs, buildDomainXml, identityAndSize, type XmlNode } from '@odyssey/libvirt-hal';
import { GUEST_VCHAN_DIR } from './runtime-files.js';
import { UID_RANGE } from './uid-ranges.js';

/**
 * The container's init: the root tree's (scripts/build-rootfs.sh), or the Debian template's, which
 * execs systemd (templates/debian-12); its argument is the domain's vchan label.
 */
export const INIT = '/sbin/odyssey-lxc-init';

export interface DomainXmlInput {
  readonly spec: DomainSpec;
  /** The root tree, mounted read-only: every domain of a template shares it. */
  readonly rootDir: string;
  /** Host directory bind-mounted at GUEST_VCHAN_DIR. */
  readonly vchanDir: string;
  /** First host uid (and gid) the domain's user namespace maps its uid 0 to. */
  readonly uidBase: number;
  /** Where each image-file volume (by role) is mounted, idmapped, on the host while the domain runs. */
  readonly imageDirs?: Readonly<Partial<Record<'root' | 'private', string>>>;
  /** The root boots systemd (rootBootsSystemd): it gets SYSTEMD_CAPABILITIES and binds /home itself. */
  readonly systemd?: boolean;
}

/**
 * What systemd needs to boot a container, found by probing the Debian template (backends/lxc/README.md):
 * with fewer it exits (tmpfs on /dev/shm: sys_admin) or journald and logind fail (setpcap,
 * sys_resource, audit_write, sys_chroot, fsetid). Capabilities in the domain's own user namespace,
 * over its own mounts, uts and pids; its uids are an unprivileged host range, so on the host it has none.
 */
export const SYSTEMD_CAPABILITIES = [
  'audit_write',
  'chown',
  'dac_override',
  'fowner',
  'fsetid',
  'kill',
  'setgid',
  'setpcap',
  'setuid',
  'sys_admin',
  'sys_chroot',
  'sys_resource',
] as const;

/**
 * What the Debian template's network daemon (agent/src/net/) needs besides: ip, nft and the proxy_arp
 * and ip_forward sysctls (net_admin), the DHCP client's raw socket on the uplink (net_raw) and its
 bind to port 68 (net_bind_service: dhclient exits 'Can't bind to dhcp address' without). The
 * domain's network namespace is created with its user namespace, so these cover its own interfaces,
 * routes and nftables tables only, never the host's or another domain's. Every systemd root gets
 * them: a qube's netvm may be set while it runs, after its capabilities are fixed.
 */
export const NETWORK_CAPABILITIES = ['net_admin', 'net_bind_service', 'net_raw'] as const;

/** Where /home lives in a private volume that is a directory: /rw/home inside the domain. */
export function privateHome(privatePath: string): string {
  return join(privatePath, 'home');
}

/** CPU bandwidth period (µs); a domain gets `vcpus` periods of CPU time per period. */
const CPU_PERIOD_US = 100_000;
const TMP_KIB = 64 * 1024;
const RUN_KIB = 16 * 1024;

function mount(source: string, target: string, readOnly: boolean): XmlNode {
  return {
    ...attrs({ type: 'mount', accessmode: 'passthrough' }),
    source: attrs({ dir: source }),
    target: attrs({ dir: target }),
    ...(readOnly ? { readonly: '' } : {}),
  };
}

function ram(target: string, kib: number): XmlNode {
  return {
    ...attrs({ type: 'ram' }),
    source: attrs({ usage: kib, units: 'KiB' }),
    target: attrs({ dir: target }),
  };
}

/**
 * libvirt LXC domain XML: a user namespace onto the domain's own host uid range (<idmap>), libvirt's
 * pid/mount/ipc/uts namespaces and, with <privnet/> and no interface, a network namespace holding
 * only loopback until attachLink puts a veth end in it (veth-links.ts); memory and CPU bandwidth limits in its cgroup; every capability dropped
 * (but SYSTEMD_CAPABILITIES for a root that boots systemd); the root
 * tree read-only with tmpfs /tmp and /run; of dom0's files only the domain's vchan directory.
 * A private volume (a directory, or an image file mounted by ImageMounts) is mounted at /rw, and its home/ at /home (as Qubes binds
 * /rw/home there), so what a user keeps in /home persists with the volume.
 */
export function domainXml({
  spec,
  rootDir,
  vchanDir,
  uidBase,
  imageDirs = {},
  systemd = false,
}: DomainXmlInput): string {
  const volume = (role: 'root' | 'private') => {
    const v = spec.volumes.find((x) => x.role === role && (x.format === 'dir' || imageDirs[role]));
    return v && { path: v.format === 'dir' ? v.path : (imageDirs[role] ?? ''), readOnly: v.readOnly };
  };
  const root = volume('root');
  const priv = volume('private');
  const filesystems = [
    // A directory root is shared by the template's domains, so read-only; an image root is the
    // domain's own (storage copies a snapshot root at each start) and writable (image-mounts.ts).
    root && imageDirs.root ? mount(root.path, '/', false) : mount(root?.path ?? rootDir, '/', true),
    ram('/tmp', TMP_KIB),
    ram('/run', RUN_KIB),
    mount(vchanDir, GUEST_VCHAN_DIR, false),
    ...(priv ? [mount(priv.path, '/rw', priv.readOnly)] : []),
    // A systemd root's init binds /rw/home itself, after seeding it from the root's /home.
    ...(priv && !systemd ? [mount(privateHome(priv.path), '/home', priv.readOnly)] : []),
  ];
  const range = attrs({ start: 0, target: uidBase, count: UID_RANGE });
  const domain: XmlNode = {
    ...attrs({ type: 'lxc' }),
    ...identityAndSize(spec),
    cputune: { period: String(CPU_PERIOD_US), quota: String(CPU_PERIOD_US * spec.vcpus) },
    os: { type: 'exe', init: INIT, initarg: spec.name },
    idmap: { uid: range, gid: range },
    features: {
      privnet: '',
      capabilities: {
        ...attrs({ policy: 'deny' }),
        ...(systemd ? Object.fromEntries(SYSTEMD_CAPABILITIES.map((c) => [c, attrs({ state: 'on' })])) : {}),
        ...(systemd ? Object.fromEntries(NETWORK_CAPABILITIES.map((c) => [c, attrs({ state: 'on' })])) : {}),
      },
    },
    ...END_ON_ANY_STOP,
    devices: { filesystem: filesystems, console: attrs({ type: 'pty' }) },
  };
  return buildDomainXml(domain);
}
