import { VchanError } from '@odyssey/hal';

export type Koffi = typeof import('koffi');

// Held in a variable so bundlers leave the import alone: koffi ships a native
// module that must sit next to the bundle (node_modules/koffi and its
// @koromix/koffi-<platform> package), and builds that never use Xen must not
// need it at all.
const KOFFI = 'koffi';

let loading: Promise<Koffi> | undefined;

/** koffi, imported on first use only, so importing @odyssey/vchan never loads native code. */
export function importKoffi(): Promise<Koffi> {
  loading ??= (import(KOFFI) as Promise<{ default: Koffi }>).then(
    (module) => module.default,
    (error: unknown) => {
      loading = undefined;
      throw new VchanError(
        `the Xen vchan transport needs the npm package koffi and its native module: ${(error as Error).message}`,
        { cause: error },
      );
    },
  );
  return loading;
}

const declared = new Set<string>();

/** Declares an opaque struct type for koffi's C-like prototypes; koffi's type names are process-wide. */
export function declareOpaque(koffi: Koffi, name: string): void {
  if (declared.has(name)) return;
  koffi.opaque(name);
  declared.add(name);
}
