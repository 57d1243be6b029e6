import { describe, expect, it } from 'vitest';
import { DomainState, LifecycleEventType, StartedDetail, StoppedDetail } from '@odyssey/libvirt';
import { CpuSampler } from '../src/cpu-sampler.js';
import { toPowerState, toVmmEvent, unreportedStateAfter } from '../src/lifecycle-events.js';

describe('libvirt → HAL mapping', () => {
  it('maps lifecycle events, with the stop reason and managed save/restore as suspend/resume', () => {
    const E = LifecycleEventType;
    expect(toVmmEvent('a', E.STARTED, StartedDetail.BOOTED)).toEqual({ type: 'started', name: 'a' });
    expect(toVmmEvent('a', E.STARTED, StartedDetail.RESTORED)).toEqual({ type: 'resumed', name: 'a' });
    expect(toVmmEvent('a', E.SUSPENDED, 0)).toEqual({ type: 'paused', name: 'a' });
    expect(toVmmEvent('a', E.RESUMED, 0)).toEqual({ type: 'unpaused', name: 'a' });
    expect(toVmmEvent('a', E.STOPPED, StoppedDetail.SHUTDOWN)).toMatchObject({ reason: 'shutdown' });
    expect(toVmmEvent('a', E.STOPPED, StoppedDetail.DESTROYED)).toMatchObject({ reason: 'destroyed' });
    expect(toVmmEvent('a', E.STOPPED, StoppedDetail.CRASHED)).toMatchObject({ reason: 'crashed' });
    expect(toVmmEvent('a', E.STOPPED, StoppedDetail.FAILED)).toMatchObject({ reason: 'failed' });
    expect(toVmmEvent('a', E.STOPPED, StoppedDetail.MIGRATED)).toMatchObject({ reason: 'unknown' });
    expect(toVmmEvent('a', E.STOPPED, StoppedDetail.SAVED)).toEqual({ type: 'suspended', name: 'a' });
    expect(toVmmEvent('a', E.DEFINED, 0)).toBeUndefined();
    expect(toVmmEvent('a', E.SHUTDOWN, 0)).toBeUndefined();
  });

  it('maps domain states to Qubes power states as upstream reads them: by activity first', () => {
    const S = DomainState;
    // Active: named by the state; SHUTOFF while still active is Dying, a state with no name Running.
    expect(toPowerState(S.RUNNING, true, false)).toBe('Running');
    expect(toPowerState(S.BLOCKED, true, false)).toBe('Running');
    expect(toPowerState(S.NOSTATE, true, false)).toBe('Running');
    expect(toPowerState(S.PAUSED, true, false)).toBe('Paused');
    expect(toPowerState(S.SHUTDOWN, true, false)).toBe('Halting');
    expect(toPowerState(S.SHUTOFF, true, false)).toBe('Dying');
    expect(toPowerState(S.SHUTOFF, true, true)).toBe('Dying');
    expect(toPowerState(S.CRASHED, true, false)).toBe('Crashed');
    expect(toPowerState(S.PMSUSPENDED, true, false)).toBe('Suspended');
    // Inactive: Halted whatever the state, Suspended with a managed save image.
    expect(toPowerState(S.SHUTOFF, false, false)).toBe('Halted');
    expect(toPowerState(S.NOSTATE, false, false)).toBe('Halted');
    expect(toPowerState(S.SHUTOFF, false, true)).toBe('Suspended');
  });

  it("leaves a domain Halting after libvirt's SHUTDOWN event, which is not passed on", () => {
    const E = LifecycleEventType;
    expect(toVmmEvent('a', E.SHUTDOWN, 0)).toBeUndefined();
    expect(unreportedStateAfter(E.SHUTDOWN)).toBe('Halting');
    expect(unreportedStateAfter(E.DEFINED)).toBeUndefined();
    expect(unreportedStateAfter(E.UNDEFINED)).toBeUndefined();
  });

  it('computes CPU usage from consecutive samples, per vcpu, starting a new series per run', () => {
    const cpu = new CpuSampler();
    expect(cpu.sample('d/1', 0n, 2, 0n)).toBe(0);
    expect(cpu.sample('d/1', 500_000_000n, 2, 1_000_000_000n)).toBe(25);
    expect(cpu.sample('d/1', 2_500_000_000n, 2, 2_000_000_000n)).toBe(100);
    expect(cpu.sample('d/2', 9_000_000_000n, 2, 3_000_000_000n)).toBe(0);
  });
});
