import type { Capability } from '@odyssey/hal';
import type { DeviceClass, DeviceRef } from '../../model/devices.js';
import { DEVICE_CLASSES, deviceString, isAssignmentMode } from '../../model/devices.js';
import {
  DeviceNotAssigned,
  DeviceNotFound,
  PermissionDenied,
  ProtocolError,
  QubesException,
  QubesUnrecognizedDeviceAssignmentMode,
  QubesVMNotRunningError,
} from '../../model/errors.js';
import type { CallContext } from '../call-context.js';
import { requireReferable } from '../references.js';
import { assignmentLine, parseAssignment, parseDeviceArg } from '../device-serialization.js';

/**
 * admin.deviceclass.List and admin.vm.device.<class>.*: persistent
 * assignments are kept and listed as upstream does. Nothing is ever exposed or
 * attached: the daemon has no device discovery (no qubesdb) and the HAL can
 * neither list nor attach devices, so Available and Attached are empty and
 * Attach fails the way upstream fails for a device that is not there.
 */

/** Remote qubes have no devices: listings are empty, changes refused (upstream's missing `devices`). */
function localOnly(ctx: CallContext): void {
  if (ctx.dest.klass === 'RemoteVM') throw new QubesException("This qube doesn't support devices");
}

/** The optional `backend+port` filter of Assigned and Attached; upstream fails without a `+`. */
function portFilter(arg: string): { backend: string; port: string } | null {
  if (arg === '') return null;
  const sep = arg.indexOf('+');
  if (sep < 0) throw new Error(`device filter without backend: ${arg}`);
  return { backend: arg.slice(0, sep), port: arg.slice(sep + 1) };
}

const byText = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function whyNotAttachable(ctx: CallContext, devclass: DeviceClass): string {
  const caps = ctx.services.lifecycle.capabilities();
  if (!caps) return 'no backend is connected';
  const capability: Capability = devclass === 'pci' ? caps.pciDevices : caps.blockDevices;
  return capability.supported
    ? `the ${caps.name} backend offers no way to attach it`
    : `backend ${caps.name}: ${capability.reason}`;
}

function deviceClass(devclass: DeviceClass) {
  return {
    /** No device discovery: no domain exposes anything, with or without a port filter. */
    available: (): string => '',

    assigned: (ctx: CallContext): string => {
      const filter = portFilter(ctx.arg);
      if (ctx.dest.klass === 'RemoteVM') return '';
      let list = ctx.dest.devices.list(devclass);
      if (filter) list = list.filter((a) => a.backend.name === filter.backend && a.portId === filter.port);
      if (filter && list.length > 1) throw new DeviceNotFound();
      return list
        .map((a) => assignmentLine(devclass, a, ctx.dest))
        .sort(byText)
        .join('');
    },

    /** Nothing is ever attached; a malformed filter still fails as upstream's does. */
    attached: (ctx: CallContext): string => {
      portFilter(ctx.arg);
      return '';
    },

    assign: (ctx: CallContext): undefined => {
      const device = parseDeviceArg(ctx.app, ctx.arg);
      const parsed = parseAssignment(ctx.payload, device, devclass, ctx.app);
      localOnly(ctx);
      requireReferable(ctx, device.backend, 'device backend');
      const assignment = { ...device, deviceId: parsed.deviceId };
      ctx.dest.devices.checkNotAssigned(devclass, assignment);
      // Upstream raises a plain ValueError here, which closes the connection without a reply.
      if (parsed.mode === 'manual') throw new Error('Only auto-attachable devices can be assigned.');
      ctx.dest.devices.assign(devclass, { ...assignment, mode: parsed.mode, options: parsed.options });
      return undefined;
    },

    unassign: (ctx: CallContext): undefined => {
      const device = parseDeviceArg(ctx.app, ctx.arg);
      localOnly(ctx);
      ctx.dest.devices.unassign(devclass, device);
      return undefined;
    },

    attach: (ctx: CallContext): undefined => {
      const device = parseDeviceArg(ctx.app, ctx.arg);
      const parsed = parseAssignment(ctx.payload, device, devclass, ctx.app);
      localOnly(ctx);
      requireReferable(ctx, device.backend, 'device backend');
      // Upstream's admin extension, before the state check: a manual attach to a qube with denied
      // interfaces needs the device's interfaces, and odysseyd discovers no device to read them from.
      if (parsed.mode === 'manual' && ctx.dest.props.tryGet('devices_denied')) {
        throw new PermissionDenied('Could not load interfaces to verify against denied list');
      }
      // Upstream's is_halted(): never true of dom0 or a RemoteVM.
      if (ctx.dest.shownPowerState === 'Halted') {
        throw new QubesVMNotRunningError('VM not running, cannot attach device, do you mean `assign`?');
      }
      const wanted: DeviceRef = { ...device, deviceId: parsed.deviceId };
      throw new ProtocolError(
        `Cannot attach unknown ${devclass} device ${deviceString(wanted)}: ` +
          `odysseyd discovers no devices and ${whyNotAttachable(ctx, devclass)}`,
      );
    },

    detach: (ctx: CallContext): undefined => {
      const device = parseDeviceArg(ctx.app, ctx.arg);
      localOnly(ctx);
      // Nothing is ever attached, so there is nothing to detach.
      throw new DeviceNotAssigned(`${devclass} device ${device.portId} not attached to ${ctx.dest.name}`);
    },

    setAssignment: (ctx: CallContext): undefined => {
      const mode = ctx.payload.toString('latin1');
      if (!isAssignmentMode(mode)) throw new QubesUnrecognizedDeviceAssignmentMode('Invalid assignment mode');
      const device = parseDeviceArg(ctx.app, ctx.arg);
      // Upstream has no device collection on remote qubes and fails without a reply.
      if (ctx.dest.klass === 'RemoteVM') throw new Error("RemoteVM has no attribute 'devices'");
      ctx.dest.devices.setMode(devclass, device, mode);
      return undefined;
    },
  };
}

export const devices = {
  classList: (): string => DEVICE_CLASSES.map((c) => `${c}\n`).join(''),
  ...Object.fromEntries(DEVICE_CLASSES.map((c) => [c, deviceClass(c)])),
} as { classList: () => string } & Record<DeviceClass, ReturnType<typeof deviceClass>>;
