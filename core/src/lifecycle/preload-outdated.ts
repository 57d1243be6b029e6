import { eventString } from '../model/property.js';
import type { Vm } from '../model/vm.js';
import type { Volume } from '../storage/driver.js';

/**
 * Properties a preload may differ in from its disposable template and still be handed out
 * (upstream's PRELOAD_OUTDATED_IGNORED_PROPERTIES): identity, addresses, run-time state and
 * what only concerns the template itself.
 */
export const PRELOAD_OUTDATED_IGNORED: ReadonlySet<string> = new Set([
  'autostart',
  'backup_timestamp',
  'default_dispvm',
  'dispid',
  'gateway',
  'gateway6',
  'icon',
  'include_in_backups',
  'installed_by_rpm',
  'ip',
  'ip6',
  'klass',
  'name',
  'qid',
  'start_time',
  'stubdom_uuid',
  'stubdom_xid',
  'template',
  'template_for_dispvms',
  'updateable',
  'uuid',
  'visible_gateway',
  'visible_gateway6',
  'visible_ip',
  'visible_ip6',
  'xid',
]);

/** Why a preload no longer matches its template: the first check that failed, as upstream stops there. */
export interface OutdatedReason {
  readonly kind: 'volumes_size' | 'volumes_outdated' | 'properties';
  readonly names: readonly string[];
}

/** Upstream's discard message: `kind: name, name`. */
export function outdatedText(reason: OutdatedReason): string {
  return `${reason.kind}: ${reason.names.join(', ')}`;
}

/** A property's value as upstream's getattr(qube, name, None) compares it: none is None. */
function valueOf(vm: Vm, name: string): string {
  const value = vm.props.tryGet(name);
  return eventString(value === undefined ? null : value);
}

/** The properties both qubes have, not ignored, whose values differ; in the disposable's List order. */
export function differingProperties(disp: Vm, template: Vm): string[] {
  return disp.props.defs
    .map((d) => d.name)
    .filter(
      (name) =>
        template.props.has(name) &&
        !PRELOAD_OUTDATED_IGNORED.has(name) &&
        valueOf(disp, name) !== valueOf(template, name),
    );
}

/**
 * Upstream's is_preload_outdated: null while `disp` still matches its template. Its private
 * volume's size, then whether any of its volumes was snapshotted from an image since replaced
 * (the template's root or private changed, was resized, imported, or its qube ran), then the
 * properties they share.
 */
export async function preloadOutdated(
  disp: Vm,
  template: Vm,
  volumesOf: (vm: Vm) => ReadonlyMap<string, Volume>,
): Promise<OutdatedReason | null> {
  const volumes = volumesOf(disp);
  const own = volumes.get('private');
  const origin = volumesOf(template).get('private');
  if (own && origin && (await own.size()) !== (await origin.size()))
    return { kind: 'volumes_size', names: ['private'] };
  for (const [name, volume] of volumes) {
    if (await volume.isOutdated()) return { kind: 'volumes_outdated', names: [name] };
  }
  const props = differingProperties(disp, template);
  return props.length > 0 ? { kind: 'properties', names: props } : null;
}
