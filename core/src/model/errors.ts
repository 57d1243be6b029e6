/**
 * Upstream's exception types (qubes.exc). The class name is what goes on the
 * wire as <ExcType>, and the upstream client maps behaviour onto those names
 * (e.g. qvm-features only falls back to a default on QubesFeatureNotFoundError),
 * so names must match upstream exactly. Every class sets `name` explicitly
 * because minifiers and subclassing must not change it.
 */
export class QubesException extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** Requests the server cannot make sense of (bad arguments, wrong destination). */
export class ProtocolError extends QubesException {}
/** Refused by policy or argument enforcement. */
export class PermissionDenied extends QubesException {}

export class QubesVMNotFoundError extends QubesException {
  constructor(readonly vmname: string) {
    super(`No such domain: ${pyRepr(vmname)}`);
  }
}
export class QubesVMInvalidUUIDError extends QubesException {
  constructor(uuid: string) {
    super(`VM UUID is not valid: ${pyRepr(uuid)}`);
  }
}
export class QubesVMAlreadyExistsError extends QubesException {}
export class QubesVMError extends QubesException {}
export class QubesVMInUseError extends QubesVMError {
  static forVm(vmname: string, detail?: string): QubesVMInUseError {
    return new QubesVMInUseError(detail ?? `Domain is in use: ${pyRepr(vmname)}`);
  }
}
export class QubesVMNotStartedError extends QubesVMError {
  static forVm(vmname: string): QubesVMNotStartedError {
    return new QubesVMNotStartedError(`Domain is powered off: ${pyRepr(vmname)}`);
  }
}
export class QubesVMNotRunningError extends QubesVMNotStartedError {
  static override forVm(vmname: string): QubesVMNotRunningError {
    return new QubesVMNotRunningError(`Domain not running (either powered off or paused): ${pyRepr(vmname)}`);
  }
}
export class QubesVMNotPausedError extends QubesVMNotStartedError {
  static override forVm(vmname: string): QubesVMNotPausedError {
    return new QubesVMNotPausedError(`Domain is not paused: ${pyRepr(vmname)}`);
  }
}
export class QubesVMNotSuspendedError extends QubesVMError {
  static forVm(vmname: string): QubesVMNotSuspendedError {
    return new QubesVMNotSuspendedError(`Domain is not suspended: ${pyRepr(vmname)}`);
  }
}
export class QubesVMNotHaltedError extends QubesVMError {
  static forVm(vmname: string): QubesVMNotHaltedError {
    return new QubesVMNotHaltedError(`Domain is not powered off: ${pyRepr(vmname)}`);
  }
}
export class QubesVMShutdownTimeoutError extends QubesVMError {
  static forVm(vmname: string): QubesVMShutdownTimeoutError {
    return new QubesVMShutdownTimeoutError(`Domain shutdown timed out: ${pyRepr(vmname)}`);
  }
}
export class QubesNoTemplateError extends QubesVMError {}
export class QubesPoolInUseError extends QubesException {}
export class QubesValueError extends QubesException {}
export class QubesPropertyValueError extends QubesValueError {}
export class QubesNoSuchPropertyError extends QubesException {
  static forHolder(prop: string, holder: string): QubesNoSuchPropertyError {
    return new QubesNoSuchPropertyError(`Invalid property ${pyRepr(prop)} of ${holder}`);
  }
}
export class QubesNotImplementedError extends QubesException {}
export class QubesMemoryError extends QubesVMError {}
export class QubesFeatureNotFoundError extends QubesException {
  static forVm(vmname: string, feature: string): QubesFeatureNotFoundError {
    return new QubesFeatureNotFoundError(`Feature not set for domain ${vmname}: ${feature}`);
  }
}
export class QubesTagNotFoundError extends QubesException {
  static forVm(vmname: string, tag: string): QubesTagNotFoundError {
    return new QubesTagNotFoundError(`Tag not set for domain ${vmname}: ${tag}`);
  }
}
export class QubesLabelNotFoundError extends QubesException {
  static forLabel(label: string): QubesLabelNotFoundError {
    return new QubesLabelNotFoundError(`Label does not exist: ${label}`);
  }
}
/**
 * Upstream's KeyError-derived exceptions that keep KeyError's __str__: the
 * message goes out as Python's repr of it, quotes included (empty without one).
 */
class KeyErrorLike extends QubesException {
  constructor(message?: string) {
    super(message === undefined ? '' : pyRepr(message));
  }
}
export class DeviceNotAssigned extends KeyErrorLike {}
export class DeviceNotFound extends KeyErrorLike {}
export class DeviceAlreadyAssigned extends KeyErrorLike {}
export class QubesUnrecognizedDeviceAssignmentMode extends ProtocolError {}
/** Never on the wire: parsing an assignment turns it into a ProtocolError, as upstream does. */
export class UnexpectedDeviceProperty extends QubesException {}
export class StoragePoolException extends QubesException {}
/**
 * Upstream raises these as plain KeyError subclasses, not QubesException, so
 * the daemon answers them with an empty response (they are not wire exceptions).
 */
export class QubesVolumeRevisionNotFoundError extends Error {
  constructor(revision: string) {
    super(`Revision not found: ${revision}`);
    this.name = 'QubesVolumeRevisionNotFoundError';
  }
}
export class QubesPoolNotFoundError extends Error {
  constructor(pool: string) {
    super(`Pool does not exist: ${pool}`);
    this.name = 'QubesPoolNotFoundError';
  }
}
export class QubesVolumeNotFoundError extends Error {
  constructor(vid: string) {
    super(`Volume does not exist: ${vid}`);
    this.name = 'QubesVolumeNotFoundError';
  }
}
export class QubesVolumeCopyTokenNotFoundError extends ProtocolError {
  constructor() {
    // Upstream sends the KeyError repr, quotes included.
    super("'Token to clone volume of qube was not found'");
  }
}
export class QubesVolumeCopyInUseError extends QubesException {}
export class QubesInvalidTagError extends ProtocolError {}
export class QubesInvalidLabelError extends ProtocolError {}
export class QubesInvalidLabelValueError extends ProtocolError {}
export class QubesBackupProfileNotFoundError extends QubesException {}
/** The Execute caller's answer when admin.backup.Cancel stopped its backup. */
export class BackupCancelledError extends QubesException {
  constructor() {
    super('Backup cancelled');
  }
}
export class BackupAlreadyRunningError extends QubesException {
  constructor() {
    super('Backup already running');
  }
}
export class QubesLabelInUseError extends QubesException {
  static forLabel(label: string): QubesLabelInUseError {
    return new QubesLabelInUseError(`Label is still in use: ${pyRepr(label)}`);
  }
}

/**
 * Python's repr() of a str, which upstream messages embed ('name' in single
 * quotes, or double quotes when the text holds a single quote).
 */
export function pyRepr(s: string): string {
  const useDouble = s.includes("'") && !s.includes('"');
  const q = useDouble ? '"' : "'";
  let out = q;
  for (const ch of s) {
    const code = ch.codePointAt(0) ?? 0;
    if (ch === '\\') out += '\\\\';
    else if (ch === q) out += `\\${q}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return out + q;
}
