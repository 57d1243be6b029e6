import type { App } from '../model/app.js';
import type { AssignmentMode, DeviceAssignment, DeviceRef } from '../model/devices.js';
import { isAssignmentMode } from '../model/devices.js';
import { ProtocolError, QubesVMNotFoundError, UnexpectedDeviceProperty, pyRepr } from '../model/errors.js';
import type { Vm } from '../model/vm.js';

/**
 * The wire forms of devices in admin.vm.device.* calls (upstream's
 * device_protocol): the qrexec argument `backend+port[+device id]`, and the
 * `key='value' ...` serialization of assignments in payloads and listings.
 */

const KEY_CHARS = new Set(
  '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!#$%&()*+,-./:;<>?@[\\]^_{|}~',
);
const VALUE_CHARS = new Set([...KEY_CHARS, ...'"\'=`', ' ']);

/** Upstream's sanitize_str: refuses characters outside the allowed set, naming them. */
function sanitize(s: string, allowed: ReadonlySet<string>, what: string): string {
  const bad = [...new Set(s)].filter((c) => !allowed.has(c)).sort();
  if (bad.length > 0)
    throw new ProtocolError(`Invalid chars in property ${what}: {${bad.map(pyRepr).join(', ')}}`);
  return s;
}

/** The 7-character interface code upstream uses for "unknown device", spelled with `_` in arguments. */
const UNKNOWN_INTERFACE = '?******';

/**
 * VirtualDevice.from_qarg: `backend+port` optionally followed by `+device id`
 * with its `:` spelled `+`; a lone `_` stands for `*`. The backend must exist.
 */
export function parseDeviceArg(app: App, arg: string): DeviceRef {
  const sep = arg.indexOf('+');
  // Upstream's tuple unpacking fails here, which closes the connection without a reply.
  if (sep < 0) throw new Error(`device argument without backend: ${arg}`);
  const backendName = arg.slice(0, sep);
  if (backendName === '_' || backendName === '*') throw new ProtocolError('Cannot determine backend domain');
  const backend = app.domains.get(backendName);
  const identity = arg.slice(sep + 1).replaceAll('+', ':');
  const colon = identity.indexOf(':');
  let portId = colon < 0 ? identity : identity.slice(0, colon);
  let deviceId = colon < 0 ? '' : identity.slice(colon + 1);
  if (portId === '_') portId = '*';
  if (deviceId === '_' || deviceId === '') deviceId = '*';
  deviceId = deviceId.replaceAll('_'.repeat(UNKNOWN_INTERFACE.length), UNKNOWN_INTERFACE);
  sanitize(portId + deviceId, VALUE_CHARS, 'value');
  return { backend, portId, deviceId };
}

/** What a payload of Assign or Attach says about the assignment. */
export interface ParsedAssignment {
  readonly deviceId: string;
  readonly mode: AssignmentMode | 'manual';
  readonly options: readonly (readonly [string, string])[];
}

/** What Python's str.strip() removes from ASCII text. */
const ASCII_WS = /^[ \t\n\r\v\f\x1c-\x1f]+|[ \t\n\r\v\f\x1c-\x1f]+$/g;

/** DeviceSerializer.unpack_properties: `key='value'` pairs, `\'` escaping a quote, `_key` being an option. */
function unpack(payload: Buffer): { props: Map<string, string>; options: Map<string, string> } {
  const props = new Map<string, string>();
  const options = new Map<string, string>();
  const bad = payload.findIndex((b) => b > 0x7f);
  if (bad >= 0) {
    throw new ProtocolError(
      `'ascii' codec can't decode byte 0x${(payload[bad] as number).toString(16)} in position ${bad}: ordinal not in range(128)`,
    );
  }
  const text = payload.toString('latin1').replace(ASCII_WS, '');
  if (text === '') return { props, options };
  const keys: string[] = [];
  const values: string[] = [];
  let [key, rest] = partition(text, "='");
  keys.push(sanitize(key.trim(), KEY_CHARS, 'name'));
  while (rest.includes("='")) {
    const [valueKey, after] = partition(rest, "='");
    rest = after;
    const cut = valueKey.lastIndexOf("' ");
    const value = cut < 0 ? '' : valueKey.slice(0, cut);
    key = cut < 0 ? valueKey : valueKey.slice(cut + 2);
    values.push(sanitize(value.replaceAll("\\'", "'"), VALUE_CHARS, 'value'));
    keys.push(sanitize(key.trim(), KEY_CHARS, 'name'));
  }
  values.push(sanitize(rest.slice(0, -1).replaceAll("\\'", "'"), VALUE_CHARS, 'value'));
  keys.forEach((k, i) => {
    const v = values[i] ?? '';
    if (k.startsWith('_')) options.set(k.slice(1), v);
    else props.set(k, v);
  });
  return { props, options };
}

function partition(s: string, sep: string): [string, string] {
  const i = s.indexOf(sep);
  return i < 0 ? [s, ''] : [s.slice(0, i), s.slice(i + sep.length)];
}

/**
 * DeviceAssignment.deserialize against the device the argument named: the
 * payload may repeat backend, port and class but not contradict them, and
 * fills in the device id when the argument left it `*`. Any failure is a
 * ProtocolError, as upstream wraps every error of this step.
 */
export function parseAssignment(
  payload: Buffer,
  expected: DeviceRef,
  devclass: string,
  app: App,
): ParsedAssignment {
  try {
    const { props, options } = unpack(payload);
    const take = (k: string): string | undefined => {
      const v = props.get(k);
      props.delete(k);
      return v;
    };
    const backend = take('backend_domain');
    if (backend !== undefined && backend !== expected.backend.name) {
      throw new UnexpectedDeviceProperty(
        `Got device exposed by ${backend}when expected devices from ${expected.backend.name}.`,
      );
    }
    const port = take('port_id');
    if (port !== undefined && port !== expected.portId) {
      throw new UnexpectedDeviceProperty(
        `Got device from port: ${port} when expected port: ${expected.portId}.`,
      );
    }
    const cls = take('devclass');
    if (cls !== undefined && cls !== devclass) {
      throw new UnexpectedDeviceProperty(`Got ${cls} device when expected ${devclass}.`);
    }
    const deviceId = take('device_id') ?? expected.deviceId;
    if (expected.deviceId !== '*' && deviceId !== expected.deviceId) {
      throw new UnexpectedDeviceProperty(
        `Unrecognized device identity '${deviceId}' expected '${expected.deviceId}'`,
      );
    }
    const mode = take('mode') ?? 'manual';
    const frontend = take('frontend_domain');
    // Upstream overwrites or drops these before building the assignment, so they are ignored.
    for (const k of ['options', 'device', 'port']) take(k);
    const [unexpected] = props.keys();
    if (unexpected !== undefined) {
      throw new Error(`DeviceAssignment.__init__() got an unexpected keyword argument ${pyRepr(unexpected)}`);
    }
    if (mode !== 'manual' && !isAssignmentMode(mode))
      throw new Error(`${pyRepr(mode)} is not a valid AssignmentMode`);
    // The frontend is always the destination here; a named one must at least exist, as upstream looks it up.
    if (frontend !== undefined) app.domains.get(frontend);
    return { deviceId, mode, options: [...options] };
  } catch (e) {
    if (e instanceof ProtocolError) throw e;
    // str() of upstream's lookup error is a KeyError's, i.e. the repr of its message.
    if (e instanceof QubesVMNotFoundError) throw new ProtocolError(pyRepr(e.message));
    throw new ProtocolError(e instanceof Error ? e.message : String(e));
  }
}

/** One line of Assigned: `backend+port:device <DeviceAssignment.serialize()>`. */
export function assignmentLine(devclass: string, a: DeviceAssignment, frontend: Vm): string {
  const fields: [string, string][] = [
    ['device_id', a.deviceId],
    ['port_id', a.portId],
    ['devclass', devclass],
    ['backend_domain', a.backend.name],
    ['mode', a.mode],
    ['frontend_domain', frontend.name],
    ...a.options.map(([k, v]): [string, string] => [`_${k}`, v]),
  ];
  const body = fields
    .map(
      ([k, v]) =>
        `${sanitize(k, KEY_CHARS, 'name')}=${sanitize(`'${v.replaceAll("'", "\\'")}'`, VALUE_CHARS, 'value')}`,
    )
    .join(' ');
  return `${a.backend.name}+${a.portId}:${a.deviceId} ${body}\n`;
}
