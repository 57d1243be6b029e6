export * from './clone-tokens.js';
export * from './driver.js';
export {
  CALLBACK_CONFIG_PATH,
  CALLBACK_DRIVER,
  CallbackPool,
  CallbackVolume,
  createCallbackDriver,
} from './drivers/callback.js';
export { DirPool } from './drivers/dir-pool.js';
export { FILE_DRIVER, fileDriver, FilePool } from './drivers/file.js';
export { KERNEL_DRIVER, kernelDriver, KernelVolume, LinuxKernelPool } from './drivers/kernel.js';
export { LVM_THIN_DRIVER, lvmThinDriver, ThinPool, ThinVolume } from './drivers/lvm-thin.js';
export { REFLINK_DRIVER, reflinkDriver, ReflinkPool } from './drivers/reflink.js';
export { copyImage, type CopyMethod, reflinkSupported } from './fsutil.js';
export { ImageVolume } from './image-volume.js';
export * from './importer.js';
export * from './layout.js';
export * from './pool-registry.js';
export * from './volume-config.js';
