import { QubesNoSuchPropertyError, QubesPropertyValueError, QubesValueError } from './errors.js';
import type { EventBus, EventMap } from './events.js';
import type { Label } from './labels.js';
import { isXmlText } from './validate.js';
import type { Vm } from './vm.js';

/** How a property's value is typed on the wire (`type=` in property replies). */
export type ApiType = 'str' | 'int' | 'bool' | 'vm' | 'label';

export type PropValue = string | number | bigint | boolean | Label | Vm | null;

/**
 * What a property of value type T holds: an int property keeps a Python int beyond
 * 2^53 exactly, as a bigint (see PyInt).
 */
export type Stored<T> = T | (T extends number ? bigint : never);

/**
 * Raised by a default function when the property has no value at all (upstream's
 * AttributeError): the API then shows `default=True type=T ` with an empty value.
 */
export class NoValue extends Error {
  constructor() {
    // Thrown and caught inside every GetAll of a qube with default-less properties: a stack
    // trace nobody reads was its main cost in the bench:api profile.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super('no value');
    Error.stackTraceLimit = limit;
  }
}

export interface PropertyHolder {
  readonly events: EventBus;
  /** What property errors call the holder: the VM name, or `Qubes` for the app. */
  readonly holderName: string;
  /** The VM an event is about, or null for the app. */
  readonly eventSubject: Vm | null;
  /** How refusals of read-only properties name the holder, e.g. `AppVM instance`. */
  readonly instanceDescription: string;
}

/**
 * One property, declared once: type, default, validation, stage, help. The API's
 * List/Get/GetAll/GetDefault/Help/Reset/Set and qubes.xml are generic over these.
 */
export interface PropertyDef<H extends PropertyHolder = PropertyHolder, T extends PropValue = PropValue> {
  readonly name: string;
  readonly type: ApiType;
  /** 2 = basic, 3 = global, 4 = cross-references; List order is (stage, name). */
  readonly stage: 2 | 3 | 4;
  readonly help: string;
  /** Value when not set explicitly; throw NoValue for "no value". Omitted = no default. */
  readonly default?: (holder: H) => Stored<T>;
  /** Turns a sanitised wire/XML string into a typed value (before validate). */
  readonly parse?: (holder: H, raw: string) => Stored<T>;
  /** Setter checks, run on every set: return the value to store, or throw. */
  readonly validate?: (holder: H, value: PropValue) => Stored<T>;
  /** Runs after validation and before the pre-set event: side effects that may refuse (e.g. running-state checks). */
  readonly preSet?: (holder: H, value: PropValue, old: PropValue | undefined) => void;
  /** Runs before a reset; throw to refuse it. */
  readonly preReset?: (holder: H) => void;
  /** After a set or reset, e.g. to announce computed properties that changed with it. */
  readonly afterChange?: (holder: H, old: PropValue | undefined) => void;
  /** Set once (at creation or load), never changed or reset afterwards. */
  readonly writeOnce?: boolean;
  /** Computed or fixed: every set is refused and it is never saved. */
  readonly readOnly?: boolean;
  /** For vm-typed properties: whether '' (None) is accepted. */
  readonly allowNone?: boolean;
}

/**
 * A property declared without its name: `declare` gives it the key it is listed
 * under, so a property's name and its key cannot disagree.
 */
export type Decl<H extends PropertyHolder, T extends PropValue = PropValue> = (
  name: string,
) => PropertyDef<H, T>;

/** The properties of one holder class, keyed by name, each with its value type. */
export type Defs<M extends Record<string, Decl<never>>> = {
  readonly [K in keyof M]: ReturnType<M[K]>;
};

/** Names each declaration of a table by its key. */
export function declare<M extends Record<string, Decl<never>>>(decls: M): Defs<M> {
  const defs: Record<string, PropertyDef<never>> = {};
  for (const [name, decl] of Object.entries(decls)) defs[name] = decl(name);
  // Each key got the definition its own declaration made, which is what Defs<M> says.
  return defs as Defs<M>;
}

/** The same declaration with some fields replaced (a class that changes a shared property). */
export function override<H extends PropertyHolder, T extends PropValue>(
  decl: Decl<H, T>,
  fields: Partial<Omit<PropertyDef<H, T>, 'name'>>,
): Decl<H, T> {
  return (name) => ({ ...decl(name), ...fields });
}

/** str() of a value as upstream puts it in events (None, True/False, names). */
export function eventString(value: PropValue): string {
  if (value === null) return 'None';
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  if (typeof value === 'object') return value.name;
  return String(value);
}

/** The value part of a property reply: like eventString, but None is empty. */
export function wireString(value: PropValue | undefined): string {
  if (value === null || value === undefined) return '';
  return eventString(value);
}

/**
 * A holder's properties seen without the holder's type: what the generic Admin API
 * handlers and qubes.xml need (a PropertyStore of any holder is one).
 */
export interface Properties {
  readonly defs: readonly PropertyDef<never>[];
  def(name: string): PropertyDef<never>;
  has(name: string): boolean;
  isDefault(name: string): boolean;
  get(name: string): PropValue;
  tryGet(name: string): PropValue | undefined;
  getDefault(name: string): PropValue;
  explicit(): ReadonlyMap<string, PropValue>;
  init(name: string, value: PropValue): void;
  parse(name: string, raw: string): PropValue;
  set(name: string, input: PropValue): void;
  reset(name: string): void;
}

/** The explicitly set values of one holder, and the generic property operations over its definitions. */
export class PropertyStore<H extends PropertyHolder> implements Properties {
  private readonly values = new Map<string, PropValue>();
  private readonly byName: ReadonlyMap<string, PropertyDef<H>>;

  constructor(
    private readonly holder: H,
    /** Already in List order. */
    readonly defs: readonly PropertyDef<H>[],
  ) {
    this.byName = new Map(defs.map((d) => [d.name, d]));
  }

  def(name: string): PropertyDef<H> {
    const d = this.byName.get(name);
    if (!d) throw QubesNoSuchPropertyError.forHolder(name, this.holder.holderName);
    return d;
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  isDefault(name: string): boolean {
    return !this.values.has(name);
  }

  /**
   * The value, explicit or default; throws NoValue when there is none. Given a
   * declaration rather than a name, the value has the declaration's type: values
   * reach the store through its parse or validate, or through init from a loader
   * or constructor that parsed them the same way; the default has that type too.
   * An int read that way is a JS number, the nearest one beyond 2^53: what timers
   * and the VMM take. Read by name, or through `exact`, it is the value as stored.
   */
  get<T extends PropValue>(prop: PropertyDef<H, T>): T;
  get(name: string): PropValue;
  get(prop: string | PropertyDef<H>): PropValue {
    return this.read(prop);
  }

  /** The value as stored, replies show and qubes.xml keeps it: an int beyond 2^53 is a bigint. */
  exact<T extends PropValue>(prop: PropertyDef<H, T>): Stored<T>;
  exact(prop: PropertyDef<H>): PropValue {
    return this.stored(prop.name);
  }

  /** Like get, but undefined instead of NoValue. */
  tryGet<T extends PropValue>(prop: PropertyDef<H, T>): T | undefined;
  tryGet(name: string): PropValue | undefined;
  tryGet(prop: string | PropertyDef<H>): PropValue | undefined {
    try {
      return this.read(prop);
    } catch (e) {
      if (e instanceof NoValue) return undefined;
      throw e;
    }
  }

  /** The default, read as get reads the value. */
  getDefault<T extends PropValue>(prop: PropertyDef<H, T>): T;
  getDefault(name: string): PropValue;
  getDefault(prop: string | PropertyDef<H>): PropValue {
    return typeof prop === 'string' ? this.storedDefault(prop) : numeric(this.storedDefault(prop.name));
  }

  private read(prop: string | PropertyDef<H>): PropValue {
    return typeof prop === 'string' ? this.stored(prop) : numeric(this.stored(prop.name));
  }

  private stored(name: string): PropValue {
    const value = this.values.get(name);
    if (value !== undefined || this.values.has(name)) return value ?? null;
    return this.storedDefault(name);
  }

  private storedDefault(name: string): PropValue {
    const d = this.def(name);
    if (!d.default) throw new NoValue();
    return d.default(this.holder);
  }

  explicit(): ReadonlyMap<string, PropValue> {
    return this.values;
  }

  /** Stores a value without checks or events: for loading state and for creation-time values. */
  init(name: string, value: PropValue): void {
    this.def(name);
    this.values.set(name, value);
  }

  /** Stores a creation-time value after the property's checks, without events (upstream sets these in the constructor). */
  initChecked(name: string, value: PropValue): void {
    const d = this.def(name);
    checkStorable(value);
    this.values.set(name, d.validate ? d.validate(this.holder, value) : value);
  }

  /** Parses a string value (wire payload or qubes.xml text) the way the property's type needs. */
  parse(name: string, raw: string): PropValue {
    const d = this.def(name);
    return d.parse ? d.parse(this.holder, raw) : raw;
  }

  set(name: string, input: PropValue): void {
    const d = this.def(name);
    if (d.readOnly) {
      throw new QubesPropertyValueError(
        `property '${name}' on ${this.holder.instanceDescription} cannot be set`,
      );
    }
    if (d.writeOnce && this.values.has(name)) {
      throw new QubesPropertyValueError(`property '${name}' is write-once and already set`);
    }
    checkStorable(input);
    const value = d.validate ? d.validate(this.holder, input) : input;
    const old = this.tryGet(name);
    d.preSet?.(this.holder, value, old);
    const args: EventMap[`property-set:${string}`] = { name, newvalue: eventString(value) };
    if (old !== undefined) args.oldvalue = eventString(old);
    const subject = this.holder.eventSubject;
    this.holder.events.fire(subject, `property-pre-set:${name}`, args);
    this.values.set(name, value);
    d.afterChange?.(this.holder, old);
    this.holder.events.fire(subject, `property-set:${name}`, args);
  }

  /**
   * Back to the default. A computed or fixed property has nothing stored, so
   * upstream's delete is a no-op there that still announces the reset.
   */
  reset(name: string): void {
    const d = this.def(name);
    if (d.writeOnce && this.values.has(name)) {
      throw new QubesPropertyValueError(`property '${name}' is write-once and cannot be reset`);
    }
    if (!d.readOnly) d.preReset?.(this.holder);
    const old = this.tryGet(name);
    const args: EventMap[`property-reset:${string}`] = { name };
    if (old !== undefined) args.oldvalue = eventString(old);
    const subject = this.holder.eventSubject;
    this.holder.events.fire(subject, `property-pre-reset:${name}`, args);
    this.holder.events.fire(subject, `property-pre-del:${name}`, args);
    this.values.delete(name);
    if (!d.readOnly) d.afterChange?.(this.holder, old);
    this.holder.events.fire(subject, `property-reset:${name}`, args);
    this.holder.events.fire(subject, `property-del:${name}`, args);
  }
}

function numeric(value: PropValue): PropValue {
  return typeof value === 'bigint' ? Number(value) : value;
}

/**
 * Refuses a string qubes.xml could not hold. Upstream's sanitize lets vertical
 * tab and form feed through and then fails saving; we refuse them, with the
 * exception its sanitize gives other invalid characters, before anything changes.
 */
function checkStorable(value: PropValue): void {
  if (typeof value === 'string' && !isXmlText(value))
    throw new QubesValueError('Invalid characters in property value');
}

export function sortDefs<H extends PropertyHolder>(defs: readonly PropertyDef<H>[]): PropertyDef<H>[] {
  return [...defs].sort((a, b) => a.stage - b.stage || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
