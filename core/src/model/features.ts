import { ProtocolError, QubesFeatureNotFoundError, QubesValueError } from './errors.js';
import { isAscii, isXmlText } from './validate.js';
import type { EventBus, EventMap } from './events.js';
import type { Vm } from './vm.js';

const FEATURE_NAME_RE = /^[A-Za-z0-9_.-]+$/;
const FEATURE_VALUE_RE = /^[\x20-\x7e]*$/;

/** Checks a feature name and value as admin.vm.feature.Set does, before anything is stored. */
export function validateFeature(name: string, value: Uint8Array): string {
  if (!isAscii(value)) throw new ProtocolError('Feature value contains non-ASCII characters');
  if (!FEATURE_NAME_RE.test(name)) throw new ProtocolError('feature name contains illegal characters');
  const text = Buffer.from(value).toString('ascii');
  if (!FEATURE_VALUE_RE.test(text)) throw new ProtocolError(`${name} value contains illegal characters`);
  return text;
}

/** A VM's features: string values in insertion order (which feature.List reports). */
export class Features {
  private readonly values = new Map<string, string>();

  constructor(
    private readonly vm: Vm,
    private readonly events: EventBus,
  ) {}

  names(): string[] {
    return [...this.values.keys()];
  }

  has(name: string): boolean {
    return this.values.has(name);
  }

  get(name: string): string | undefined {
    return this.values.get(name);
  }

  require(name: string): string {
    const v = this.values.get(name);
    if (v === undefined) throw QubesFeatureNotFoundError.forVm(this.vm.name, name);
    return v;
  }

  entries(): IterableIterator<[string, string]> {
    return this.values.entries();
  }

  /** Loading state: no events. */
  init(name: string, value: string): void {
    this.values.set(name, value);
  }

  set(name: string, value: string): void {
    // The API allows printable ASCII only; this guards every other caller, since qubes.xml stores the value.
    if (!isXmlText(value) || !isXmlText(name))
      throw new QubesValueError(`${name} value contains illegal characters`);
    const old = this.values.get(name);
    const args: EventMap[`domain-feature-set:${string}`] = { feature: name, value };
    if (old !== undefined) args.oldvalue = old;
    this.events.fire(this.vm, `domain-feature-pre-set:${name}`, args);
    this.values.set(name, value);
    this.events.fire(this.vm, `domain-feature-set:${name}`, args);
  }

  remove(name: string): void {
    if (!this.values.has(name)) throw QubesFeatureNotFoundError.forVm(this.vm.name, name);
    this.events.fire(this.vm, `domain-feature-pre-delete:${name}`, { feature: name });
    this.values.delete(name);
    this.events.fire(this.vm, `domain-feature-delete:${name}`, { feature: name });
  }
}

/** Upstream's feature booleans: set internally, True is "1" and False/None are "". */
export function featureTrue(value: string | undefined): boolean {
  return value !== undefined && value !== '';
}
