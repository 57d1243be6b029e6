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
 * (defined, undefined, the guest's own shutdown request, which a 'stopped' follows).
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

/** libvirt domain state → Qubes power state. A shut-off domain with a managed save image is Suspended. */
export function toPowerState(state: number, hasSaveImage: boolean): PowerState {
  switch (state) {
    case DomainState.RUNNING:
    case DomainState.BLOCKED:
      return 'Running';
    case DomainState.PAUSED:
      return 'Paused';
    case DomainState.SHUTDOWN:
      return 'Halting';
    case DomainState.SHUTOFF:
      return hasSaveImage ? 'Suspended' : 'Halted';
    case DomainState.CRASHED:
      return 'Crashed';
    case DomainState.PMSUSPENDED:
      return 'Suspended';
    default:
      return 'NA';
  }
}
