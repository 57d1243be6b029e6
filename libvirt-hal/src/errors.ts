import { VmmError, type VmmErrorCode } from '@odyssey/hal';
import { ConnectionClosedError, ErrorCode, isLibvirtError } from '@odyssey/libvirt';

const BY_LIBVIRT_CODE = new Map<number, VmmErrorCode>([
  [ErrorCode.NO_DOMAIN, 'no-such-domain'],
  [ErrorCode.OPERATION_INVALID, 'invalid-state'],
  [ErrorCode.OPERATION_TIMEOUT, 'timeout'],
  [ErrorCode.NO_SUPPORT, 'unsupported'],
  [ErrorCode.OPERATION_UNSUPPORTED, 'unsupported'],
  [ErrorCode.NO_CONNECT, 'unavailable'],
  [ErrorCode.INVALID_CONN, 'unavailable'],
]);

/** A libvirt failure as the HAL error core understands; `what` names the operation and domain. */
export function toVmmError(error: unknown, what: string): VmmError {
  if (error instanceof VmmError) return error;
  if (error instanceof ConnectionClosedError) {
    return new VmmError('unavailable', `${what}: libvirt connection lost (${error.message})`, {
      cause: error,
    });
  }
  if (isLibvirtError(error)) {
    return new VmmError(BY_LIBVIRT_CODE.get(error.code) ?? 'failed', `${what}: ${error.message}`, {
      cause: error,
    });
  }
  return new VmmError('failed', `${what}: ${error instanceof Error ? error.message : String(error)}`, {
    cause: error,
  });
}

export function isNoDomain(error: unknown): boolean {
  return isLibvirtError(error) && error.code === ErrorCode.NO_DOMAIN;
}
