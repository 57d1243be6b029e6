import { XMLParser } from 'fast-xml-parser';

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '',
  isArray: (name) => name === 'console' || name === 'serial',
});

interface ParsedChardev {
  type?: string;
  tty?: string;
  source?: { path?: string };
}

interface ParsedDomain {
  domain?: { devices?: { console?: ParsedChardev[]; serial?: ParsedChardev[] } };
}

/**
 * The host pty of a running domain's first console, from its live XML: libvirt fills in the
 * `<source path>` (and `tty`) of a `pty` chardev once the hypervisor has opened it. A serial port
 * on a pty counts when no `<console>` element names one (QEMU's console is an alias of serial 0).
 */
export function consolePtyPath(domainXml: string): string | undefined {
  const devices = (parser.parse(domainXml) as ParsedDomain).domain?.devices;
  for (const chardev of [...(devices?.console ?? []), ...(devices?.serial ?? [])]) {
    if (chardev.type !== 'pty') continue;
    const path = chardev.source?.path ?? chardev.tty;
    if (path?.startsWith('/dev/')) return path;
  }
  return undefined;
}
