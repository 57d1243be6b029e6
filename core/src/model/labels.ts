import {
  pyRepr,
  QubesValueError,
  QubesInvalidLabelError,
  QubesInvalidLabelValueError,
  QubesLabelInUseError,
  QubesLabelNotFoundError,
} from './errors.js';
import type { PyInt } from './validate.js';
import { isAscii, parsePythonInt } from './validate.js';

/** A label: a name and a colour, numbered from 1; 1-8 are the defaults that cannot be removed. */
export class Label {
  constructor(
    readonly index: number,
    /** 0xRRGGBB */
    readonly color: string,
    readonly name: string,
  ) {}

  get icon(): string {
    return `appvm-${this.name}`;
  }

  toString(): string {
    return this.name;
  }
}

export const DEFAULT_LABELS: readonly [number, string, string][] = [
  [1, '0xcc0000', 'red'],
  [2, '0xf57900', 'orange'],
  [3, '0xedd400', 'yellow'],
  [4, '0x73d216', 'green'],
  [5, '0x555555', 'gray'],
  [6, '0x3465a4', 'blue'],
  [7, '0x75507b', 'purple'],
  [8, '0x000000', 'black'],
];
export const MAX_DEFAULT_LABEL = 8;

const LABEL_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.';

/** qubes.utils.validate_label_name, checks and messages in upstream's order. */
export function validateLabelName(name: string, creation: boolean): void {
  if (name === '') throw new QubesInvalidLabelError('Label name must be set');
  if (creation && /^[0-9]+$/.test(name)) throw new QubesInvalidLabelError('Label must not be a digit');
  if (![...name].every((c) => LABEL_CHARS.includes(c))) {
    throw new QubesInvalidLabelError(`Label must be in safe set: ${LABEL_CHARS}`);
  }
}

/** qubes.utils.validate_label_value: `0x` and six hex digits, stored as given. */
export function validateLabelColor(untrusted: Uint8Array): string {
  if (untrusted.length === 0) throw new QubesInvalidLabelValueError('Label value must be set');
  if (!isAscii(untrusted)) throw new QubesInvalidLabelValueError('Label value must be encoded in ASCII');
  const color = Buffer.from(untrusted).toString('ascii').trim();
  if (color.length !== 8) throw new QubesInvalidLabelValueError('Label value must have length of 8');
  if (!color.startsWith('0x')) throw new QubesInvalidLabelValueError('Label value must start with: 0x');
  if (!/^[0-9a-fA-F]{6}$/.test(color.slice(2))) {
    throw new QubesInvalidLabelValueError(
      'Label value must only contain hexadecimal digits after prefix: 0123456789abcdefABCDEF',
    );
  }
  return color;
}

export class LabelRegistry {
  private readonly byIndex = new Map<number, Label>();

  static withDefaults(): LabelRegistry {
    const r = new LabelRegistry();
    for (const [i, c, n] of DEFAULT_LABELS) r.add(new Label(i, c, n));
    return r;
  }

  add(label: Label): void {
    this.byIndex.set(label.index, label);
  }

  /** Labels in index order, which is the order admin.label.List reports. */
  list(): Label[] {
    return [...this.byIndex.values()].sort((a, b) => a.index - b.index);
  }

  /** No label has an index beyond 2^53, which is where a PyInt becomes a bigint. */
  private atIndex(index: PyInt | undefined): Label | undefined {
    return typeof index === 'number' ? this.byIndex.get(index) : undefined;
  }

  /** Upstream's app.get_label: a name, else an index as Python's int() reads it (` 3`, `+3`, `0_3`). */
  find(ref: string): Label | undefined {
    for (const l of this.byIndex.values()) if (l.name === ref) return l;
    return this.atIndex(parsePythonInt(ref));
  }

  /** Like find, throwing QubesLabelNotFoundError: what admin.label.* look labels up with. */
  lookup(ref: string): Label {
    const l = this.find(ref);
    if (!l) throw QubesLabelNotFoundError.forLabel(ref);
    return l;
  }

  /**
   * The label property's setter (values from Set and qubes.xml): `label-<n>`
   * names index n, anything else is looked up as find does.
   */
  get(ref: string): Label {
    const m = /^label-(.*)$/s.exec(ref);
    if (!m) return this.lookup(ref);
    const digits = m[1] ?? '';
    const index = parsePythonInt(digits);
    if (index === undefined)
      throw new QubesValueError(`invalid literal for int() with base 10: ${pyRepr(digits)}`);
    const l = this.atIndex(index);
    if (!l) throw QubesLabelNotFoundError.forLabel(String(index));
    return l;
  }

  create(name: string, untrustedColor: Uint8Array): Label {
    validateLabelName(name, true);
    const color = validateLabelColor(untrustedColor);
    if (this.find(name)) throw QubesLabelInUseError.forLabel(name);
    const index = Math.max(MAX_DEFAULT_LABEL, ...this.byIndex.keys()) + 1;
    const label = new Label(index, color, name);
    this.add(label);
    return label;
  }

  remove(label: Label): void {
    this.byIndex.delete(label.index);
  }
}
