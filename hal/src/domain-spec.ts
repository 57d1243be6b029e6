/**
 * What core asks a backend to run: derived from a VM's properties and volumes.
 * Backends turn it into their own domain description (libvirt XML, xl config, ...)
 * and must not need anything else from core to do so.
 */
export type VirtMode = 'pv' | 'pvh' | 'hvm';

export type VolumeRole = 'root' | 'private' | 'volatile' | 'kernel';

export interface VolumeSpec {
  /** Volume name in the VM (root, private, volatile, kernel). */
  readonly name: string;
  readonly role: VolumeRole;
  /** Absolute path of the image (or directory for kernel volumes). */
  readonly path: string;
  readonly format: 'raw' | 'qcow2' | 'dir';
  readonly readOnly: boolean;
}

export interface KernelSpec {
  /** Absolute path of the kernel image. */
  readonly kernel: string;
  readonly initramfs?: string;
  readonly cmdline: string;
}

/**
 * One network link: the frontend domain's interface and the backend (netvm) domain that serves
 * it. The frontend side has the qube's own MAC (QubesDB /qubes-mac); the backend side is the
 * interface the netvm sees for this client, whose MAC encodes the client's IPv4 address (see
 * `backendMac`), so the netvm's guest knows which client an interface carries.
 */
export interface NetworkLink {
  /** The client domain (the qube whose `netvm` is `backendDomain`). */
  readonly frontendDomain: string;
  /** The netvm that forwards the client's traffic. */
  readonly backendDomain: string;
  /** The client's MAC, `mac` property, lower case `xx:xx:xx:xx:xx:xx`. */
  readonly mac: string;
  /** The client's IPv4 address, `ip` property (dotted quad). */
  readonly ip: string;
}

/**
 * The network a domain is given at start. `link` is its frontend interface (absent without a
 * netvm); `uplink` asks for an interface to the outside world, given to a qube that provides
 * network and has no netvm (sys-net). The backend side of a link is never in the netvm's own
 * spec: core attaches it to the running netvm (Vmm.attachLink) once both domains run.
 */
export interface NetworkSpec {
  readonly link?: NetworkLink;
  readonly uplink: boolean;
}

const DOTTED_QUAD = /^(?:0|[1-9]\d{0,2})(?:\.(?:0|[1-9]\d{0,2})){3}$/;

/** The MAC of a link's backend side: `fe:00:` then the four bytes of the client's IPv4 address. */
export function backendMac(ip: string): string {
  // Dotted decimal only: Number() alone would take ' 7', '0x7' or a trailing newline as a byte.
  if (!DOTTED_QUAD.test(ip)) throw new Error(`not an IPv4 address: ${JSON.stringify(ip)}`);
  const bytes = ip.split('.').map(Number);
  if (bytes.some((b) => b > 255)) throw new Error(`not an IPv4 address: ${JSON.stringify(ip)}`);
  return ['fe', '00', ...bytes.map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

/**
 * The netvm's interface of a client's link, where a backend names it: `vif` and the client's IPv4
 * address in hex (11 characters, within IFNAMSIZ), the name the guest's net daemon gives a client
 * NIC, so its `vif*` rules match.
 */
export function backendIfname(ip: string): string {
  return `vif${backendMac(ip).slice('fe:00:'.length).replaceAll(':', '')}`;
}

export interface DomainSpec {
  readonly name: string;
  readonly uuid: string;
  /** Memory at start, MiB. */
  readonly memoryMiB: number;
  /** Upper limit for ballooning, MiB; 0 = no balloon (memory is fixed). */
  readonly maxMemoryMiB: number;
  readonly vcpus: number;
  readonly virtMode: VirtMode;
  readonly kernel?: KernelSpec;
  readonly volumes: readonly VolumeSpec[];
  readonly network?: NetworkSpec;
  readonly debug: boolean;
}
