/**
 * Errors a backend raises through the HAL. Core maps them onto upstream's
 * exception types (QubesVMError and friends) at the API boundary, so a backend
 * never needs to know Qubes' exception names.
 */
export type VmmErrorCode =
  /** The hypervisor (or its management daemon) cannot be reached. */
  | 'unavailable'
  /** The domain is not defined in the hypervisor. */
  | 'no-such-domain'
  /** The operation is not valid in the domain's current state. */
  | 'invalid-state'
  /** The backend does not implement this operation (see capabilities()). */
  | 'unsupported'
  /** The operation did not finish in time. */
  | 'timeout'
  /** Anything else the hypervisor reported. */
  | 'failed';

export class VmmError extends Error {
  constructor(
    readonly code: VmmErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'VmmError';
  }
}

export class VchanError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'VchanError';
  }
}
