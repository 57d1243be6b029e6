import { XdrError, type XdrReader } from '../xdr.js';
import { readString } from './handles.js';

export type TypedParamValue = number | bigint | boolean | string;

/** virTypedParameterType: the discriminant of remote_typed_param_value. */
const TypedParamType = { INT: 1, UINT: 2, LLONG: 3, ULLONG: 4, DOUBLE: 5, BOOLEAN: 6, STRING: 7 } as const;

function readValue(r: XdrReader): TypedParamValue {
  const type = r.int();
  switch (type) {
    case TypedParamType.INT:
      return r.int();
    case TypedParamType.UINT:
      return r.uint();
    case TypedParamType.LLONG:
      return r.hyper();
    case TypedParamType.ULLONG:
      return r.uhyper();
    case TypedParamType.DOUBLE:
      return r.double();
    case TypedParamType.BOOLEAN:
      return r.int() !== 0;
    case TypedParamType.STRING:
      return readString(r);
    default:
      throw new XdrError(`unknown typed parameter type ${type}`);
  }
}

/** remote_typed_param<>: a name → value list, returned as a plain record. */
export function readTypedParams(r: XdrReader, max: number): Record<string, TypedParamValue> {
  const out: Record<string, TypedParamValue> = {};
  for (const [name, value] of r.array((x) => [readString(x), readValue(x)] as const, max)) out[name] = value;
  return out;
}
