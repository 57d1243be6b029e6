/**
 * The exception type names an EXCEPTION reply may carry: upstream's qubes.exc names (and the
 * device and backup errors qubesd raises), which clients branch on. The daemon sends only these;
 * the client maps them onto its error classes.
 */
export const EXCEPTION_TYPES = [
  'QubesException',
  'ProtocolError',
  'PermissionDenied',
  'QubesValueError',
  'QubesPropertyValueError',
  'QubesNoSuchPropertyError',
  'QubesNotImplementedError',
  'QubesMemoryError',
  'QubesVMNotFoundError',
  'QubesVMInvalidUUIDError',
  'QubesVMAlreadyExistsError',
  'QubesVMError',
  'QubesVMInUseError',
  'QubesVMNotStartedError',
  'QubesVMNotRunningError',
  'QubesVMNotPausedError',
  'QubesVMNotSuspendedError',
  'QubesVMNotHaltedError',
  'QubesVMShutdownTimeoutError',
  'QubesNoTemplateError',
  'QubesPoolInUseError',
  'QubesLabelInUseError',
  'QubesLabelNotFoundError',
  'QubesInvalidLabelError',
  'QubesInvalidLabelValueError',
  'QubesFeatureNotFoundError',
  'QubesTagNotFoundError',
  'QubesInvalidTagError',
  'QubesVolumeCopyTokenNotFoundError',
  'QubesVolumeCopyInUseError',
  'QubesBackupProfileNotFoundError',
  'BackupCancelledError',
  'BackupAlreadyRunningError',
  'StoragePoolException',
  'QubesUnrecognizedDeviceAssignmentMode',
  'DeviceNotFound',
  'DeviceNotAssigned',
  'DeviceAlreadyAssigned',
  'UnexpectedDeviceProperty',
] as const;

export type ExceptionType = (typeof EXCEPTION_TYPES)[number];
