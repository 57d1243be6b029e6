import { XMLParser, XMLValidator } from 'fast-xml-parser';

import type { FirewallRule } from '../model/firewall.js';
import { isExpired, makeRule, maxExpire, ruleProperties } from '../model/firewall.js';
import { renderXml, xmlEl } from './xml-writer.js';

/**
 * firewall.xml, version 2 as upstream writes it (one <rule> of <property>
 * elements per rule, expired rules dropped), and version 1 as it still reads.
 */
const TEXT = '#text';
const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  parseTagValue: false,
  parseAttributeValue: false,
  // A comment's own leading and trailing spaces are part of it.
  trimValues: false,
  htmlEntities: true,
  alwaysCreateTextNode: true,
  // Version 1 keeps its exceptions as any child elements of its root, whatever that is named
  // (Qubes 3 wrote <QubesFirewallRules>).
  isArray: (name, jpath) =>
    ['rule', 'property'].includes(name) || /^[^.]+\.(?!@_|#text)[^.]+$/.test(String(jpath)),
});

export function serializeFirewall(rules: readonly FirewallRule[]): string {
  const live = rules.filter((r) => !isExpired(r));
  const ruleEls = live.map((r) =>
    xmlEl('rule', {}, [
      xmlEl(
        'properties',
        {},
        ruleProperties(r).map(([name, value]) => xmlEl('property', { name }, value)),
      ),
    ]),
  );
  return renderXml(xmlEl('firewall', { version: '2' }, [xmlEl('rules', {}, ruleEls)]));
}

type XmlObj = Record<string, unknown>;
const text = (v: unknown): string =>
  typeof v === 'object' && v !== null ? String((v as XmlObj)[TEXT] ?? '') : String(v ?? '');

function loadV2(fw: XmlObj): FirewallRule[] {
  const rules = ((fw.rules as XmlObj[] | undefined)?.[0]?.rule as XmlObj[] | undefined) ?? [];
  return rules.map((rule) => {
    const props = ((rule.properties as XmlObj | undefined)?.property as XmlObj[] | undefined) ?? [];
    const options: Record<string, string> = {};
    for (const p of props) options[String(p['@_name'])] = text(p);
    // Files from before expire was bounded, or saved while dom0's zone was further west, may
    // hold a later one (even as 1e+21); such a rule never expires either way, and refusing it
    // here would keep the daemon from starting.
    if (options.expire !== undefined && Number(options.expire) > maxExpire())
      options.expire = String(maxExpire());
    return makeRule(options);
  });
}

/** Qubes 3.x format: a default policy plus exceptions; translated as upstream translates it. */
function loadV1(fw: XmlObj): FirewallRule[] {
  const policy = fw['@_policy'];
  // Upstream asserts it: anything else is no firewall file of Qubes 3.
  if (policy !== 'allow' && policy !== 'deny') throw new Error('version 1 needs policy allow or deny');
  const actionFor = (key: string) => ((fw[`@_${key}`] ?? policy) === 'allow' ? 'accept' : 'drop');
  const rules: FirewallRule[] = [
    makeRule({ action: actionFor('dns'), specialtarget: 'dns' }),
    makeRule({ action: actionFor('icmp'), proto: 'icmp' }),
  ];
  const exceptionAction = policy === 'allow' ? 'drop' : 'accept';
  for (const key of Object.keys(fw).filter((k) => !k.startsWith('@_') && k !== TEXT)) {
    for (const el of (fw[key] as XmlObj[] | undefined) ?? []) {
      const options: Record<string, string> = { action: exceptionAction };
      const address = el['@_address'] ?? el['@_name'];
      if (address !== undefined) options.dsthost = String(address);
      let proto = el['@_proto'] as string | undefined;
      const port = el['@_port'] as string | undefined;
      const toport = el['@_toport'] as string | undefined;
      if (port) options.dstports = toport ? `${port}-${toport}` : port;
      if (port && !proto) proto = 'tcp';
      if (proto && proto !== 'any') options.proto = proto;
      if (el['@_expire']) options.expire = String(el['@_expire']);
      const raw = el['@_netmask'];
      // Upstream's int(): digits only; anything else is refused by the rule's checks, as NaN.
      const netmask = raw === undefined ? undefined : /^[0-9]+$/.test(String(raw)) ? Number(raw) : Number.NaN;
      rules.push(makeRule(options, netmask));
    }
  }
  if (policy === 'allow') rules.push(makeRule({ action: 'accept' }));
  return rules;
}

/**
 * A file that is not well-formed XML is refused, as upstream's lxml refuses it: the lenient
 * parser alone reads an empty or cut-off file as some of its rules, or as none. The root's name
 * is not checked, as upstream does not check it.
 */
export function parseFirewall(xml: string): FirewallRule[] {
  const valid = XMLValidator.validate(xml);
  if (valid !== true) throw new Error(`not well-formed XML (line ${valid.err.line}): ${valid.err.msg}`);
  const doc = parser.parse(xml) as XmlObj;
  const [root, ...more] = Object.keys(doc).filter((key) => !key.startsWith('?'));
  // Two roots of one name come as an array.
  if (root === undefined || more.length > 0 || Array.isArray(doc[root]))
    throw new Error('not one root element');
  const fw = doc[root] as XmlObj;
  const version = String(fw['@_version'] ?? '1');
  if (version === '2') return loadV2(fw);
  if (version === '1') return loadV1(fw);
  throw new Error(`Unsupported firewall.xml version: ${version}`);
}
