/**
 * Errors raised by the Admin API client.
 *
 * `type` is always the exception name qubesd sent (or, for failures detected on this side, the name
 * upstream's client uses), so scripts can branch on the same names as with qubesadmin. Classes exist for
 * the names whose semantics callers rely on; any other name arrives as a plain `QubesError`.
 */
export class QubesError extends Error {
  readonly type: string;
  /** Traceback text; qubesd only fills it when started with --debug. */
  readonly traceback: string;

  constructor(message: string, type: string = new.target.name, traceback = '') {
    super(message);
    this.type = type;
    this.name = type;
    this.traceback = traceback;
  }
}

/** Upstream derives these from KeyError: "the thing asked for is not there". */
export class QubesNotFoundError extends QubesError {}
export class QubesVMNotFoundError extends QubesNotFoundError {}
export class QubesFeatureNotFoundError extends QubesNotFoundError {}
export class QubesTagNotFoundError extends QubesNotFoundError {}
export class QubesLabelNotFoundError extends QubesNotFoundError {}
export class QubesVolumeCopyTokenNotFoundError extends QubesNotFoundError {}

export class QubesValueError extends QubesError {}
export class QubesPropertyValueError extends QubesValueError {}
export class QubesNoSuchPropertyError extends QubesError {}
export class QubesVMInvalidUUIDError extends QubesError {}
export class QubesVMAlreadyExistsError extends QubesError {}
export class QubesVMError extends QubesError {}
export class QubesVMInUseError extends QubesError {}
export class QubesVMNotStartedError extends QubesError {}
export class QubesVMNotRunningError extends QubesError {}
export class QubesVMNotPausedError extends QubesError {}
export class QubesVMNotSuspendedError extends QubesError {}
export class QubesVMNotHaltedError extends QubesError {}
export class QubesVMAlreadyStartedError extends QubesError {}
export class QubesVMShutdownTimeoutError extends QubesError {}
export class QubesNoTemplateError extends QubesError {}
export class QubesPoolInUseError extends QubesError {}
export class QubesLabelInUseError extends QubesError {}
export class QubesNotImplementedError extends QubesError {}
export class StoragePoolException extends QubesError {}
export class ProtocolError extends QubesError {}
export class PermissionDenied extends QubesError {}

/** qubesd closed the connection without a reply (unhandled server error, framing error, or policy). */
export class QubesDaemonAccessError extends QubesError {}
/** The reply did not follow the framing at all. */
export class QubesDaemonCommunicationError extends QubesError {}

const byType = new Map<string, new (message: string, type?: string, traceback?: string) => QubesError>(
  [
    QubesVMNotFoundError,
    QubesFeatureNotFoundError,
    QubesTagNotFoundError,
    QubesLabelNotFoundError,
    QubesVolumeCopyTokenNotFoundError,
    QubesValueError,
    QubesPropertyValueError,
    QubesNoSuchPropertyError,
    QubesVMInvalidUUIDError,
    QubesVMAlreadyExistsError,
    QubesVMError,
    QubesVMInUseError,
    QubesVMNotStartedError,
    QubesVMNotRunningError,
    QubesVMNotPausedError,
    QubesVMNotSuspendedError,
    QubesVMNotHaltedError,
    QubesVMAlreadyStartedError,
    QubesVMShutdownTimeoutError,
    QubesNoTemplateError,
    QubesPoolInUseError,
    QubesLabelInUseError,
    QubesNotImplementedError,
    StoragePoolException,
    ProtocolError,
    PermissionDenied,
    QubesDaemonAccessError,
    QubesDaemonCommunicationError,
  ].map((cls) => [cls.name, cls]),
);

// Server-side subclasses of ProtocolError; mapping them keeps `instanceof ProtocolError` truthful.
for (const name of [
  'QubesInvalidTagError',
  'QubesInvalidLabelError',
  'QubesInvalidLabelValueError',
  'QubesUnrecognizedDeviceAssignmentMode',
]) {
  byType.set(name, ProtocolError);
}

/** Builds the error for an exception reply: the class registered for `type`, else a generic QubesError. */
export function errorFromReply(type: string, message: string, traceback = ''): QubesError {
  const cls = byType.get(type) ?? QubesError;
  return new cls(message, type, traceback);
}
