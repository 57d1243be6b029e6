import type { PowerState, VmmEvent } from '@odyssey/hal';
import { DomainState, LifecycleEventType, StartedDetail, StoppedDetail } from '@odyssey/libvirt';

/** virDomainEventSuspendedDetailType values that are not a user-visible pause. */
const SUSPENDED_MIGRATED = 1;
/** virDomainEventResumedDetailType: a plain unpause. */
const RESUMED_UNPAUSED = 0;

const STOP_REASON: Record<number, Extract<VmmEvent, { type: 'stopped' }>['reason']> = {
  [StoppedDetail.SHUTDOWN]: 'shutdown',
  [StoppedDetail.DESTROYED]: 'destroyed',
  [StoppedDetail.CRASHED]: 'crashed',
  [StoppedDetail.FAILED]: 'failed',
};

/**
 * libvirt lifecycle event → HAL event, or undefined for those the HAL has no word for
 * (defined, undefined, the guest's own shutdown request, which a 'stopped' follows; upstream's
 * qubesd ignores it too, see unreportedStateAfter).
 */
export function toVmmEvent(name: string, event: number, detail: number): VmmEvent | undefined {
  switch (event) {
    case LifecycleEventType.STARTED:
      return detail === StartedDetail.RESTORED ? { type: 'resumed', name } : { type: 'started', name };
    case LifecycleEventType.SUSPENDED:
      return detail === SUSPENDED_MIGRATED ? undefined : { type: 'paused', name };
    case LifecycleEventType.RESUMED:
      return detail === RESUMED_UNPAUSED ? { type: 'unpaused', name } : undefined;
    case LifecycleEventType.STOPPED:
      if (detail === StoppedDetail.SAVED) return { type: 'suspended', name };
      return { type: 'stopped', name, reason: STOP_REASON[detail] ?? 'unknown' };
    case LifecycleEventType.PMSUSPENDED:
      return { type: 'suspended', name };
    default:
      return undefined;
  }
}

/**
 * libvirt's view of a domain → Qubes power state, read as upstream's get_power_state reads it:
 * an inactive domain is Halted, or Suspended when it has a managed save image (this HAL's
 * suspend); an active one is named by its state, SHUTOFF while still active being Dying (the
 * hypervisor cleaning up after the guest stopped), and a state with no name of its own Running.
 */
export function toPowerState(state: number, active: boolean, hasSaveImage: boolean): PowerState {
  if (!active) return hasSaveImage ? 'Suspended' : 'Halted';
  switch (state) {
    case DomainState.PAUSED:
      return 'Paused';
    case DomainState.SHUTDOWN:
      return 'Halting';
    case DomainState.SHUTOFF:
      return 'Dying';
    case DomainState.CRASHED:
      return 'Crashed';
    case DomainState.PMSUSPENDED:
      return 'Suspended';
    default:
      return 'Running';
  }
}

/**
 * The state a lifecycle event the HAL does not pass on leaves the domain in, for the states this
 * HAL remembers between events: libvirt's SHUTDOWN event (the guest has finished shutting down)
 * leaves it in libvirt's SHUTDOWN state, Halting, until its stop event.
 */
export function unreportedStateAfter(event: number): PowerState | undefined {
  return event === LifecycleEventType.SHUTDOWN ? 'Halting' : undefined;
}

/**
 * The power states of a domain the hypervisor still has active: leaving one for Halted or
 * Suspended is a stop (or a suspend); moving among them is not, as a Halting, Dying or Crashed
 * domain has not stopped yet.
 */
export const ACTIVE_STATES: ReadonlySet<PowerState> = new Set<PowerState>([
  'Transient',
  'Running',
  'Paused',
  'Halting',
  'Dying',
  'Crashed',
]);
