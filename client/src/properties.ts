import { QubesDaemonCommunicationError } from './errors.js';

export type PropertyType = 'str' | 'int' | 'bool' | 'vm' | 'label';

/** A property as qubesd reports it; `value` is the raw text ('' for None / no value). */
export interface PropertyValue {
  isDefault: boolean;
  type: PropertyType;
  value: string;
}

/** The value in its natural JS type: null for an unset VM/label, undefined when an int/bool has no value. */
export type TypedValue = string | number | boolean | null | undefined;

const TYPES: ReadonlySet<string> = new Set<PropertyType>(['str', 'int', 'bool', 'vm', 'label']);

/** Parses a `property.Get` body: `default=<True|False> type=<T> <value>`. */
export function parsePropertyValue(text: string): PropertyValue {
  const first = text.indexOf(' ');
  const second = first < 0 ? -1 : text.indexOf(' ', first + 1);
  if (second < 0 || !text.startsWith('default=')) {
    throw new QubesDaemonCommunicationError(`Invalid property format received: ${text}`);
  }
  const { type, value } = parseTypedText(text.slice(first + 1));
  return { isDefault: text.slice('default='.length, first) === 'True', type, value };
}

/** Parses `type=<T> <value>` (the tail of Get, and the whole of GetDefault). */
export function parseTypedText(text: string): { type: PropertyType; value: string } {
  const space = text.indexOf(' ');
  const typeField = space < 0 ? text : text.slice(0, space);
  if (!typeField.startsWith('type=')) {
    throw new QubesDaemonCommunicationError(`Invalid type prefix received: ${typeField}`);
  }
  const type = typeField.slice('type='.length);
  if (!TYPES.has(type)) throw new QubesDaemonCommunicationError(`Received invalid value type: ${type}`);
  return { type: type as PropertyType, value: space < 0 ? '' : text.slice(space + 1) };
}

/**
 * Parses a `property.GetAll` body. Each line is `<name> <Get format>` with `\` and newline escaped as
 * `\\` and `\n`, so splitting on real newlines is safe before unescaping.
 */
export function parseAllProperties(text: string): Map<string, PropertyValue> {
  return parsePropertyLines(text.split('\n'));
}

/**
 * The lines of a GetAll body, parsed; with `wanted`, only those properties (a name is an identifier, so
 * its escaped and plain forms are the same and lines of other properties need not be unescaped).
 */
export function parsePropertyLines(
  lines: readonly string[],
  wanted?: ReadonlySet<string>,
): Map<string, PropertyValue> {
  const result = new Map<string, PropertyValue>();
  for (const line of lines) {
    if (line === '') continue;
    const space = line.indexOf(' ');
    const name = line.slice(0, space);
    if (space < 0 || name.includes('\\'))
      throw new QubesDaemonCommunicationError(`Invalid property line received: ${line}`);
    if (wanted && !wanted.has(name)) continue;
    result.set(name, parsePropertyValue(unescapeLine(line.slice(space + 1), line)));
  }
  return result;
}

function unescapeLine(text: string, line: string): string {
  if (!text.includes('\\')) return text;
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch !== '\\') {
      out += ch;
      continue;
    }
    const next = text[++i];
    if (next === 'n') out += '\n';
    else if (next === '\\') out += '\\';
    else throw new QubesDaemonCommunicationError(`Invalid escape sequence in property line: ${line}`);
  }
  return out;
}

export function typedValue(prop: Pick<PropertyValue, 'type' | 'value'>): TypedValue {
  switch (prop.type) {
    case 'str':
      return prop.value;
    case 'int':
      return prop.value === '' ? undefined : Number(prop.value);
    case 'bool':
      return prop.value === '' ? undefined : prop.value === 'True';
    case 'vm':
    case 'label':
      return prop.value === '' ? null : prop.value;
  }
}

/** How upstream's tools print a value: Python's str() of the parsed value (so an unset VM is "None"). */
export function displayValue(prop: Pick<PropertyValue, 'type' | 'value'>): string | undefined {
  const value = typedValue(prop);
  if (value === undefined) return undefined;
  if (value === null) return 'None';
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  return String(value);
}
