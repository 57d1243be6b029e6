import { XMLBuilder } from 'fast-xml-parser';
import type { DomainSpec } from '@odyssey/hal';

/** One element for fast-xml-parser's builder: attributes under `@_name`, text under `#text`. */
export type XmlNode = Record<string, unknown>;

const ATTR = '@_';
const builder = new XMLBuilder({
  ignoreAttributes: false,
  attributeNamePrefix: ATTR,
  format: true,
  indentBy: '  ',
  suppressEmptyNode: true,
});

/** Attributes of an element, every value as a string. */
export function attrs(values: Record<string, string | number>): XmlNode {
  return Object.fromEntries(Object.entries(values).map(([k, v]) => [`${ATTR}${k}`, String(v)]));
}

/** An element with attributes and text content. */
export function textNode(values: Record<string, string | number>, text: string | number): XmlNode {
  return { ...attrs(values), '#text': String(text) };
}

/**
 * The libvirt XML of `<domain>`. Every value goes through the builder, which escapes it;
 * nothing is concatenated into markup.
 */
export function buildDomainXml(domain: XmlNode): string {
  return builder.build({ domain }) as string;
}

/** The XML of one device element (`<interface>`, `<disk>`, ...) as hot-plug calls take it. */
export function buildDeviceXml(element: string, device: XmlNode): string {
  return builder.build({ [element]: device }) as string;
}

/** Whether the domain may balloon: only when maxmem exceeds its memory at start. */
export function balloons(spec: DomainSpec): boolean {
  return spec.maxMemoryMiB > spec.memoryMiB;
}

/** The domain's identity and size: memory is the ballooning limit, currentMemory what it starts with. */
export function identityAndSize(spec: DomainSpec): XmlNode {
  return {
    name: spec.name,
    uuid: spec.uuid,
    memory: textNode({ unit: 'MiB' }, balloons(spec) ? spec.maxMemoryMiB : spec.memoryMiB),
    currentMemory: textNode({ unit: 'MiB' }, spec.memoryMiB),
    vcpu: String(spec.vcpus),
  };
}

/** However a domain stops (poweroff, reboot, crash), it ends: core decides what happens next. */
export const END_ON_ANY_STOP: XmlNode = {
  on_poweroff: 'destroy',
  on_reboot: 'destroy',
  on_crash: 'destroy',
};
