export { CpuSampler } from './cpu-sampler.js';
export { isNoDomain, toVmmError } from './errors.js';
export { runtimeDirNameProblem, type DriverFlags, type LibvirtFlavour, type StopReason } from './flavour.js';
export { withKernelDefaults } from './kernel-cmdline.js';
export { toPowerState, toVmmEvent } from './lifecycle-events.js';
export { LibvirtVmm, type LibvirtVmmOptions } from './libvirt-vmm.js';
export { connectionFromEnv, type LibvirtConnectionOptions } from './options.js';
export {
  END_ON_ANY_STOP,
  attrs,
  balloons,
  buildDeviceXml,
  buildDomainXml,
  identityAndSize,
  textNode,
  type XmlNode,
} from './xml.js';
