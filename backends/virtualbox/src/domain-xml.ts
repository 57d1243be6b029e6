import { VmmError, type DomainSpec, type VolumeSpec } from '@odyssey/hal';
import { attrs, buildDomainXml, type XmlNode } from '@odyssey/libvirt-hal';

/**
 * The guest's serial port carrying its vchans: COM2 (`/dev/ttyS1` in a Linux guest), so COM1
 * stays the guest's console. libvirt's vbox driver numbers the ports from 0.
 */
export const VCHAN_SERIAL_PORT = 1;

/** SATA disk names in the order of the volumes (root, private, volatile). */
const DISK_NAMES = ['sda', 'sdb', 'sdc', 'sdd'];

export interface DomainXmlInput {
  readonly spec: DomainSpec;
  /** Host path of the vchan serial port's pipe (a UNIX socket VirtualBox binds). */
  readonly vchanPipe: string;
}

function disk(volume: VolumeSpec, index: number): XmlNode {
  const dev = DISK_NAMES[index];
  if (volume.format === 'dir' || dev === undefined)
    throw new VmmError(
      'unsupported',
      `volume ${volume.name} (${volume.format}): VirtualBox attaches image files only, up to ${DISK_NAMES.length}`,
    );
  return {
    ...attrs({ type: 'file', device: 'disk' }),
    source: attrs({ file: volume.path }),
    target: attrs({ dev, bus: 'sata' }),
    ...(volume.readOnly ? { readonly: '' } : {}),
  };
}

/**
 * libvirt's vbox domain XML: memory (VirtualBox has no balloon libvirt drives, so `memory` is all
 * the guest gets), vcpus, the volumes' image files as SATA disks booted from the first, and the
 * vchan serial port in host-pipe mode. libvirt's vbox driver sets the mode but not VirtualBox's
 * server flag, so VirtualBox connects to the pipe as a client: dom0 listens there (PipeMeeting).
 * The driver cannot boot a kernel directly, so a spec that names one is refused rather than
 * silently booted from disk.
 */
export function domainXml({ spec, vchanPipe }: DomainXmlInput): string {
  if (spec.kernel)
    throw new VmmError(
      'unsupported',
      `${spec.name}: libvirt's vbox driver cannot boot a kernel directly; the guest boots from its first disk`,
    );
  const volumes = spec.volumes.filter((v) => v.role !== 'kernel');
  const domain: XmlNode = {
    ...attrs({ type: 'vbox' }),
    name: spec.name,
    uuid: spec.uuid,
    memory: { ...attrs({ unit: 'MiB' }), '#text': String(spec.memoryMiB) },
    vcpu: String(spec.vcpus),
    os: { type: 'hvm', boot: attrs({ dev: 'hd' }) },
    devices: {
      disk: volumes.map(disk),
      serial: {
        ...attrs({ type: 'pipe' }),
        source: attrs({ path: vchanPipe }),
        target: attrs({ port: VCHAN_SERIAL_PORT }),
      },
    },
  };
  return buildDomainXml(domain);
}
