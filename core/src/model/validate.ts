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
 * A Python int as the daemon keeps it: a number while that is exact, a bigint
 * beyond 2^53, so that a value is stored and shown with every digit it was given.
 */
export type PyInt = number | bigint;

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function toPyInt(n: bigint): PyInt {
  return n >= -MAX_SAFE && n <= MAX_SAFE ? Number(n) : n;
}

/**
 * AbstractQubesAPI.validate_number: numbers in arguments and payloads are plain
 * ASCII digits, at most 19 of them, without leading zeros. Messages start with the
 * name as Python's str.capitalize() writes it (first letter upper, the rest lower).
 */
export function validateNumber(untrusted: string, what: string, allowNegative = false): PyInt {
  const negative = allowNegative && untrusted.startsWith('-');
  const s = negative ? untrusted.slice(1) : untrusted;
  const name = what.charAt(0).toUpperCase() + what.slice(1).toLowerCase();
  if (!/^[0-9]+$/.test(s)) throw new ProtocolError(`${name} contains non ASCII digits`);
  if (s.length > 19) throw new ProtocolError(`${name} is bigger than 19 decimal digits`);
  if (s.length > 1 && s.startsWith('0')) throw new ProtocolError(`${name} contains spurious leading zeros`);
  // -0 is 0, as Python's int has no negative zero.
  return toPyInt(negative ? -BigInt(s) : BigInt(s));
}

/** Python's string.printable: what an untyped property value may contain. */
export function isPythonPrintable(s: string): boolean {
  return /^[0-9A-Za-z!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~ \t\n\r\x0b\x0c]*$/.test(s);
}

export function isAscii(buf: Uint8Array): boolean {
  for (const b of buf) if (b > 0x7f) return false;
  return true;
}

/** The most digits Python's int() converts from text (sys.get_int_max_str_digits(), default 4300). */
const INT_MAX_STR_DIGITS = 4300;

/**
 * Python's int(str) over ASCII text: surrounding whitespace, a sign, digits with single
 * underscores between them (leading zeros allowed), and no more digits than Python converts.
 */
export function parsePythonInt(s: string): PyInt | undefined {
  const m = /^[ \t\n\v\f\r]*([-+]?)([0-9]+(?:_[0-9]+)*)[ \t\n\v\f\r]*$/.exec(s);
  if (!m) return undefined;
  const digits = (m[2] ?? '').replaceAll('_', '');
  if (digits.length > INT_MAX_STR_DIGITS) return undefined;
  const n = BigInt(digits);
  return toPyInt(m[1] === '-' ? -n : n);
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
