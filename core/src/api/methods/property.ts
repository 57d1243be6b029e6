import { QubesNoSuchPropertyError, QubesValueError } from '../../model/errors.js';
import type { Properties, PropertyDef, PropValue } from '../../model/property.js';
import { NoValue, wireString } from '../../model/property.js';
import { isAscii, isPythonPrintable, validateName } from '../../model/validate.js';
import { asVm } from '../../model/vm-ref.js';
import type { CallContext } from '../call-context.js';
import { requireReferable } from '../references.js';

/**
 * admin.property.* and admin.vm.property.*: generic over the property
 * declarations, so no property has a handler of its own.
 */
type Store = Properties;

const vmStore = (ctx: CallContext): Store => ctx.dest.props;
const appStore = (ctx: CallContext): Store => ctx.app.props;

/** `default=<bool> type=<T> <value>`, the body of Get and each GetAll line. */
function describe(store: Store, def: PropertyDef<never>): string {
  let value: PropValue | undefined;
  try {
    value = store.get(def.name);
  } catch (e) {
    // Upstream's getattr fails with AttributeError when a computed value reads a property its
    // source lacks (visible_gateway with dom0 as netvm), and _serialize_property reports that as unset.
    if (e instanceof QubesNoSuchPropertyError) return `default=True type=${def.type} `;
    if (!(e instanceof NoValue)) throw e;
  }
  return `default=${store.isDefault(def.name) ? 'True' : 'False'} type=${def.type} ${wireString(value)}`;
}

/** GetAll escapes so that one property stays on one line; most values have nothing to escape. */
function escapeLine(s: string): string {
  if (!s.includes('\\') && !s.includes('\n')) return s;
  return s.replaceAll('\\', '\\\\').replaceAll('\n', '\\n');
}

/** qubes.property.sanitize: the checks every Set payload passes before the property's own setter. */
function sanitize(def: PropertyDef<never>, payload: Buffer): string {
  // Upstream's VMProperty.sanitize raises its error without a message.
  if (!isAscii(payload))
    throw new QubesValueError(def.type === 'vm' ? '' : 'Non-ASCII bytes in property value');
  const value = payload.toString('ascii');
  if (def.type === 'vm') {
    if (value !== '') validateName(value);
  } else if ((def.type === 'str' && !def.parse) || def.type === 'label') {
    // A str property that parses its value (uuid, ip, ip6) has a type of its own upstream (UUID,
    // IPv4Address, IPv6Address): its parse error is the answer, whatever the characters.
    if (!isPythonPrintable(value)) throw new QubesValueError('Invalid characters in property value');
  }
  return value;
}

/** The GetAll body: one escaped `<name> <Get body>` line per property, in declaration order. */
export function getAllBody(store: Store): string {
  return store.defs.map((d) => `${d.name} ${escapeLine(describe(store, d))}\n`).join('');
}

function makeHandlers(storeOf: (ctx: CallContext) => Store) {
  return {
    list: (ctx: CallContext): string =>
      storeOf(ctx)
        .defs.map((d) => `${d.name}\n`)
        .join(''),

    get: (ctx: CallContext): string => {
      const store = storeOf(ctx);
      return describe(store, store.def(ctx.arg));
    },

    getAll: (ctx: CallContext): string => getAllBody(storeOf(ctx)),

    getDefault: (ctx: CallContext): string => {
      const store = storeOf(ctx);
      const def = store.def(ctx.arg);
      let value: PropValue;
      try {
        value = store.getDefault(def.name);
      } catch (e) {
        if (e instanceof NoValue) return '';
        throw e;
      }
      return `type=${def.type} ${wireString(value)}`;
    },

    help: (ctx: CallContext): string => storeOf(ctx).def(ctx.arg).help,

    set: (ctx: CallContext): undefined => {
      const store = storeOf(ctx);
      const def = store.def(ctx.arg);
      const value = store.parse(def.name, sanitize(def, ctx.payload));
      if (def.type === 'vm') requireReferable(ctx, asVm(value), def.name);
      store.set(def.name, value);
      return undefined;
    },

    reset: (ctx: CallContext): undefined => {
      const store = storeOf(ctx);
      store.reset(store.def(ctx.arg).name);
      return undefined;
    },
  };
}

export const vmProperty = makeHandlers(vmStore);
export const globalProperty = makeHandlers(appStore);
