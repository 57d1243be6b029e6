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

export interface NetworkSpec {
  readonly mac: string;
  readonly ip?: string;
  /** Name of the domain that provides the network, if any. */
  readonly backendDomain?: string;
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
