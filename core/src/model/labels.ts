import {
  QubesInvalidLabelError,
  QubesInvalidLabelValueError,
  QubesLabelInUseError,
  QubesLabelNotFoundError,
} from './errors.js';

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

export function validateLabelName(name: string, creation: boolean): void {
  if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new QubesInvalidLabelError('label name contains illegal characters');
  if (creation && /^[0-9]+$/.test(name)) throw new QubesInvalidLabelError('label name cannot be a number');
}

export function validateLabelColor(untrusted: string): string {
  const color = untrusted.trim();
  if (color.length !== 8 || !/^0x[0-9a-fA-F]{6}$/.test(color)) {
    throw new QubesInvalidLabelValueError('label color must be in 0xRRGGBB format');
  }
  return color.toLowerCase();
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

  /** Lookup as upstream's get_label: by name, by index number, or by `label-<n>` id. */
  find(ref: string): Label | undefined {
    for (const l of this.byIndex.values()) if (l.name === ref) return l;
    const m = /^(?:label-)?([0-9]+)$/.exec(ref);
    if (m) return this.byIndex.get(Number(m[1]));
    return undefined;
  }

  get(ref: string): Label {
    const l = this.find(ref);
    if (!l) throw QubesLabelNotFoundError.forLabel(ref);
    return l;
  }

  create(name: string, untrustedColor: string): Label {
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
