import { isIPv4, isIPv6 } from 'node:net';

import { QubesPropertyValueError, QubesValueError, pyRepr } from './errors.js';
import type { Decl, PropertyDef, PropertyHolder, PropValue, Stored } from './property.js';
import type { PyInt } from './validate.js';
import { parseBoolLiteral, parsePythonInt } from './validate.js';

/**
 * Constructors for the common property shapes, so that each property is one
 * declaration: type, default, checks, help; its name is the key it is declared under.
 */
type Extra<H extends PropertyHolder, T extends PropValue> = Partial<
  Omit<PropertyDef<H, T>, 'name' | 'type' | 'help'>
>;
/** A fixed default, or a function of the holder. */
export type DefaultOf<H, T> = T | ((holder: H) => T);

function defaultFn<H, T extends string | number | bigint | boolean | null>(
  d: DefaultOf<H, T> | undefined,
): ((h: H) => T) | undefined {
  if (d === undefined) return undefined;
  return typeof d === 'function' ? d : () => d;
}

/** qubes.property.bool: the literal exactly as given, no surrounding whitespace. */
export function parseBool(raw: string): boolean {
  const b = parseBoolLiteral(raw);
  if (b === undefined) throw new QubesValueError(`Invalid literal for boolean property: ${pyRepr(raw)}`);
  return b;
}

export function parseInt10(raw: string): PyInt {
  const n = parsePythonInt(raw);
  if (n === undefined) throw new QubesValueError('Failed to parse property value as int');
  return n;
}

/** N = null for a property whose value may be None (a default of null, a None from its setter). */
export function strProp<H extends PropertyHolder, N extends null = never>(
  help: string,
  dflt?: DefaultOf<H, string | N>,
  extra: Extra<H, string | N> = {},
): Decl<H, string | N> {
  return (name) => ({ name, type: 'str', stage: 2, help, default: defaultFn(dflt), ...extra });
}

/** N = null for a property whose value may be None. */
export function intProp<H extends PropertyHolder, N extends null = never>(
  help: string,
  dflt?: DefaultOf<H, Stored<number | N>>,
  extra: Extra<H, number | N> = {},
): Decl<H, number | N> {
  return (name) => ({
    name,
    type: 'int',
    stage: 2,
    help,
    default: defaultFn(dflt),
    parse: (_h, raw) => parseInt10(raw),
    ...extra,
  });
}

export function boolProp<H extends PropertyHolder>(
  help: string,
  dflt: DefaultOf<H, boolean>,
  extra: Extra<H, boolean> = {},
): Decl<H, boolean> {
  return (name) => ({
    name,
    type: 'bool',
    stage: 2,
    help,
    default: defaultFn(dflt),
    parse: (_h, raw) => parseBool(raw),
    ...extra,
  });
}

/** A computed property: never set, never saved, always reported as default. */
export function computed<
  H extends PropertyHolder,
  T extends string | number | boolean | null = string | number | boolean | null,
>(type: 'str' | 'int' | 'bool', help: string, fn: (holder: H) => T): Decl<H, T> {
  // Upstream's stateless properties are typed by their return annotation: a Set parses the value
  // by that type before the setter refuses it, so a malformed value is reported as such.
  // The parsed value only decides the error: Set refuses a computed property before storing anything.
  const parse =
    type === 'int'
      ? (_h: H, raw: string) => parseInt10(raw) as Stored<T>
      : type === 'bool'
        ? (_h: H, raw: string) => parseBool(raw) as T
        : undefined;
  return (name) => ({ name, type, stage: 2, help, default: fn, readOnly: true, ...(parse ? { parse } : {}) });
}

function isPyInt(v: PropValue): v is PyInt {
  return typeof v === 'number' || typeof v === 'bigint';
}

export function positive(prop: string) {
  return (_h: unknown, v: PropValue): PyInt => {
    if (!isPyInt(v) || v <= 0) throw new QubesPropertyValueError(`${prop} must be positive`);
    return v;
  };
}

export function nonNegative(prop: string) {
  return (_h: unknown, v: PropValue): PyInt => {
    if (!isPyInt(v) || v < 0) throw new QubesPropertyValueError(`${prop} must be positive or zero`);
    return v;
  };
}

/** ipaddress.IPv4Address(str): dotted quad without leading zeros; str() gives it back unchanged. */
export function parseIPv4(raw: string): string {
  if (!isIPv4(raw)) throw new QubesValueError('Failed to parse property value as IPv4Address');
  return raw;
}

/**
 * ipaddress.IPv6Address(str), as str() gives it back: the address compressed
 * and lower-case (RFC 5952, which the URL parser applies), and a zone id
 * (`%eth0`) kept verbatim; the zone may hold anything but another `%`.
 */
export function parseIPv6(raw: string): string {
  const pct = raw.indexOf('%');
  const addr = pct === -1 ? raw : raw.slice(0, pct);
  const zone = pct === -1 ? undefined : raw.slice(pct + 1);
  if (!isIPv6(addr) || zone === '' || zone?.includes('%')) {
    throw new QubesValueError('Failed to parse property value as IPv6Address');
  }
  const canonical = new URL(`http://[${addr}]/`).hostname.slice(1, -1);
  return zone === undefined ? canonical : `${canonical}%${zone}`;
}
