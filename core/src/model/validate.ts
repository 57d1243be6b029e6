import { ProtocolError, QubesValueError } from './errors.js';

const NAME_RE = /^[a-zA-Z][a-zA-Z0-9_.-]*$/;

/** Upstream's qubes.vm.validate_name: the rules every domain name must pass. */
export function validateName(name: string, ErrorClass: new (msg: string) => Error = QubesValueError): void {
  if (name.length > 31) throw new ErrorClass('VM name must be shorter than 32 characters');
  if (/^[0-9_.-]/.test(name)) {
    throw new ErrorClass('VM name cannot start with hyphen, underscore, dot or numbers');
  }
  if (!NAME_RE.test(name)) throw new ErrorClass('VM name contains illegal characters');
  if (name === 'Domain-0') throw new ErrorClass("VM name cannot be 'Domain-0'");
  if (name === 'none' || name === 'default') throw new ErrorClass("VM name cannot be 'none' nor 'default'");
  if (name.endsWith('-dm')) throw new ErrorClass('VM name cannot end with -dm');
}

const TRUE_LITERALS = new Set(['1', 'yes', 'true', 'on']);
const FALSE_LITERALS = new Set(['0', 'no', 'false', 'off']);

/** qubes.property.bool: the boolean literals accepted in property values and payloads. */
export function parseBoolLiteral(value: string): boolean | undefined {
  const v = value.toLowerCase();
  if (TRUE_LITERALS.has(v)) return true;
  if (FALSE_LITERALS.has(v)) return false;
  return undefined;
}

/** The boolean payload of the Set.rw / Set.ephemeral / Set.ephemeral_volatile calls: an ASCII bool literal. */
export function parseBoolPayload(payload: Buffer): boolean {
  const text = payload.toString('latin1');
  const b = parseBoolLiteral(text);
  if (b === undefined || /[^\x00-\x7f]/.test(text)) throw new ProtocolError('Payload is not boolean ASCII');
  return b;
}

/**
 * AbstractQubesAPI.validate_number: numbers in arguments and payloads are plain
 * ASCII digits, at most 19 of them, without leading zeros. Messages start with the
 * name as Python's str.capitalize() writes it (first letter upper, the rest lower).
 */
export function validateNumber(untrusted: string, what: string, allowNegative = false): number {
  let s = untrusted;
  if (allowNegative && s.startsWith('-')) s = s.slice(1);
  const name = what.charAt(0).toUpperCase() + what.slice(1).toLowerCase();
  if (!/^[0-9]+$/.test(s)) throw new ProtocolError(`${name} contains non ASCII digits`);
  if (s.length > 19) throw new ProtocolError(`${name} is bigger than 19 decimal digits`);
  if (s.length > 1 && s.startsWith('0')) throw new ProtocolError(`${name} contains spurious leading zeros`);
  return Number(untrusted);
}

/** Python's string.printable: what an untyped property value may contain. */
export function isPythonPrintable(s: string): boolean {
  return /^[0-9A-Za-z!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~ \t\n\r\x0b\x0c]*$/.test(s);
}

export function isAscii(buf: Uint8Array): boolean {
  for (const b of buf) if (b > 0x7f) return false;
  return true;
}

/** Python int(str) for the forms a property value can take: optional sign, digits, surrounding space. */
export function parsePythonInt(s: string): number | undefined {
  const m = /^\s*([-+]?)(\d+(?:_\d+)*)\s*$/.exec(s);
  if (!m) return undefined;
  const n = Number(`${m[1] ?? ''}${(m[2] ?? '').replaceAll('_', '')}`);
  return Number.isSafeInteger(n) ? n : undefined;
}

/**
 * XML 1.0's Char production: what qubes.xml can hold. C0 controls other than
 * tab, LF and CR, U+FFFE/U+FFFF and unpaired surrogates have no representation
 * at all, not even as character references.
 */
export function isXmlText(s: string): boolean {
  return !/[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(
    s,
  );
}

/** Python's uuid.UUID(text): optional urn:/uuid: prefixes and braces, dashes anywhere, 32 hex digits. */
export function parseUuid(raw: string): string {
  const hex = raw
    .replace('urn:', '')
    .replace('uuid:', '')
    .replace(/^\{+|\}+$/g, '')
    .replaceAll('-', '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new QubesValueError('Failed to parse property value as UUID');
  const h = hex.toLowerCase();
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
