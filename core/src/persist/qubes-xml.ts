import { XMLParser, XMLValidator } from 'fast-xml-parser';

import type { App } from '../model/app.js';
import type { DeviceAssignment } from '../model/devices.js';
import { isAssignmentMode } from '../model/devices.js';
import { Label, LabelRegistry } from '../model/labels.js';
import type { Properties, PropValue } from '../model/property.js';
import { wireString } from '../model/property.js';
import type { Vm } from '../model/vm.js';
import { initPropertyTags } from '../model/property-tags.js';
import { loadMeminfoWriter } from '../model/service-features.js';
import { isVmClassName } from '../model/vm-classes.js';
import type { XmlElement } from './xml-writer.js';
import { renderAround, renderXml, xmlEl } from './xml-writer.js';

/**
 * qubes.xml in upstream's shape (admin-api-reference §5): labels, pools,
 * global properties, then domains with their properties, features, tags,
 * device assignments and volume configuration. Only explicitly set, saveable properties are written.
 */
export type Attrs = Record<string, string>;

/** Storage configuration as loaded from qubes.xml. */
export interface StorageState {
  readonly pools: readonly Attrs[];
  readonly volumes: ReadonlyMap<Vm, readonly Attrs[]>;
}

/** Where the writer gets storage configuration from at save time. */
export interface StorageSource {
  pools(): readonly Attrs[];
  volumes(vm: Vm): readonly Attrs[] | undefined;
}

type Node = Record<string, unknown>;
/** Events that may change the kernel of qubes other than their subject. */
const KERNEL_CHANGE = /^property-(set|del|reset):(default_)?kernel$/;
/** Events that change a domain's features and nothing else of its element. */
const FEATURE_CHANGE = /^domain-feature-(pre-)?(set|delete):/;
const ATTR = '@_';

function propertiesOf(store: Properties): XmlElement[] {
  const explicit = store.explicit();
  return store.defs
    .filter((d) => explicit.has(d.name) && !d.readOnly)
    .map((d) => xmlEl('property', { name: d.name }, wireString(explicit.get(d.name) as PropValue)));
}

function deviceNode(a: DeviceAssignment): XmlElement {
  const attrs = { 'backend-domain': a.backend.name, id: a.portId, mode: a.mode, identity: a.deviceId };
  return xmlEl(
    'device',
    attrs,
    a.options.map(([k, v]) => xmlEl('option', { name: k }, v)),
  );
}

/** A domain's element around its features, which change most often: `open` ends after its properties. */
interface DomainPieces {
  readonly open: string;
  readonly close: string;
}

function domainPieces(vm: Vm, volumes: readonly Attrs[] | undefined): DomainPieces {
  const rest = [
    xmlEl(
      'tags',
      {},
      vm.tags.inOrder().map((t) => xmlEl('tag', { name: t })),
    ),
    ...vm.devices
      .classes()
      .map((devclass) => xmlEl('devices', { class: devclass }, vm.devices.list(devclass).map(deviceNode))),
  ];
  if (volumes)
    rest.push(
      xmlEl(
        'volume-config',
        {},
        volumes.map((a) => xmlEl('volume', a)),
      ),
    );
  const [start, end] = renderAround(xmlEl('domain', { id: `domain-${vm.qid}`, class: vm.klass }), 2);
  return {
    open: start + renderXml(xmlEl('properties', {}, propertiesOf(vm.props)), 3),
    close: rest.map((e) => renderXml(e, 3)).join('') + end,
  };
}

function featuresXml(features: Iterable<readonly [string, string]>): string {
  return renderXml(
    xmlEl(
      'features',
      {},
      [...features].map(([k, v]) => xmlEl('feature', { name: k }, v)),
    ),
    3,
  );
}

/** A domain's cached element: its pieces, its features, and the whole joined, each until a change. */
interface Fragment {
  readonly pieces: DomainPieces;
  features?: string;
  xml?: string;
}

/**
 * Serialises the app to qubes.xml. Each domain's element is built once and
 * kept until an event about that domain (or markDirty) says it changed, so a
 * save after one property change rebuilds one domain, not all of them, and
 * one after a feature change only that domain's features.
 */
export class QubesXmlWriter {
  private readonly fragments = new Map<Vm, Fragment>();

  constructor(
    private readonly app: App,
    private readonly storage: StorageSource,
  ) {
    app.events.subscribe((e) => {
      // A kernel volume's vid follows the qube's kernel, whose default follows its template's and
      // then default_kernel: a change there changes other qubes' elements, with no event of theirs.
      if (KERNEL_CHANGE.test(e.name)) this.fragments.clear();
      else if (e.subject && FEATURE_CHANGE.test(e.name)) {
        const f = this.fragments.get(e.subject);
        if (f) f.features = f.xml = undefined;
      } else if (e.subject) this.fragments.delete(e.subject);
    });
  }

  /** For changes that fire no event (e.g. volume configuration). */
  markDirty(vm: Vm): void {
    this.fragments.delete(vm);
  }

  serialize(): string {
    const { head, domains } = this.parts();
    return qubesDocument(
      head,
      domains.map(([, xml]) => xml),
    );
  }

  /**
   * The document in pieces: everything before `<domains>` (labels, pools,
   * global properties) and each domain's element, in order. The journal
   * records these, so a record after one change repeats only that domain.
   */
  parts(): { readonly head: string; readonly domains: readonly (readonly [Vm, string])[] } {
    const live = new Set(this.app.domains.list());
    for (const vm of this.fragments.keys()) if (!live.has(vm)) this.fragments.delete(vm);
    const domains = this.app.domains.list().map((vm) => {
      let f = this.fragments.get(vm);
      if (f === undefined) {
        f = { pieces: domainPieces(vm, this.storage.volumes(vm)) };
        this.fragments.set(vm, f);
      }
      f.features ??= featuresXml(vm.features.entries());
      f.xml ??= f.pieces.open + f.features + f.pieces.close;
      return [vm, f.xml] as const;
    });
    return { head: this.head(), domains };
  }

  /** The document with each domain's features as `features` gives them (a backup's view); not cached. */
  serializeWithFeatures(features: (vm: Vm) => Iterable<readonly [string, string]>): string {
    return qubesDocument(
      this.head(),
      this.app.domains.list().map((vm) => this.domainXml(vm, features(vm))),
    );
  }

  private domainXml(vm: Vm, features: Iterable<readonly [string, string]>): string {
    const { open, close } = domainPieces(vm, this.storage.volumes(vm));
    return open + featuresXml(features) + close;
  }

  private head(): string {
    return [
      xmlEl(
        'labels',
        {},
        this.app.labels.list().map((l) => xmlEl('label', { id: `label-${l.index}`, color: l.color }, l.name)),
      ),
      xmlEl(
        'pools',
        {},
        this.storage.pools().map((p) => xmlEl('pool', p)),
      ),
      xmlEl('properties', {}, propertiesOf(this.app.props)),
    ]
      .map((e) => renderXml(e, 1))
      .join('');
  }
}

/** qubes.xml from its head (labels, pools, global properties) and its domains' elements. */
export function qubesDocument(head: string, domains: readonly string[]): string {
  const body = domains.length > 0 ? `  <domains>\n${domains.join('')}  </domains>\n` : '  <domains/>\n';
  return `<qubes>\n${head}${body}</qubes>\n`;
}

// ---- loading ----------------------------------------------------------------

interface XEl {
  readonly name: string;
  readonly attrs: Attrs;
  readonly children: XEl[];
  readonly text: string;
}

const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: ATTR,
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: false,
  processEntities: true,
  // Decodes the character references the writer (and lxml) use for CR, tab and LF.
  htmlEntities: true,
});

function toTree(nodes: Node[]): XEl[] {
  const out: XEl[] = [];
  for (const node of nodes) {
    const name = Object.keys(node).find((k) => k !== ':@');
    if (!name || name === '#text' || name.startsWith('?')) continue;
    const raw = (node[name] as Node[] | undefined) ?? [];
    const attrs: Attrs = {};
    for (const [k, v] of Object.entries((node[':@'] as Attrs | undefined) ?? {}))
      attrs[k.slice(ATTR.length)] = String(v);
    const text = raw
      .filter((c) => '#text' in c)
      .map((c) => String(c['#text']))
      .join('');
    out.push({ name, attrs, children: toTree(raw), text });
  }
  return out;
}

const child = (e: XEl | undefined, name: string): XEl | undefined => e?.children.find((c) => c.name === name);
const children = (e: XEl | undefined, name: string): XEl[] =>
  e?.children.filter((c) => c.name === name) ?? [];

export class QubesXmlError extends Error {
  constructor(message: string) {
    super(`qubes.xml: ${message}`);
    this.name = 'QubesXmlError';
  }
}

/** Old names upstream still reads. */
const RENAMED: Record<string, string> = { dispvm_allowed: 'template_for_dispvms' };
const DROPPED = new Set(['default_fw_netvm']);

/** The text of a <property>, resolving the legacy ref="label-N" / ref="domain-N" form. */
function propertyText(app: App, p: XEl): string {
  const ref = p.attrs.ref;
  if (ref === undefined) return p.text;
  const label = /^label-(\d+)$/.exec(ref);
  if (label) return ref;
  const dom = /^domain-(\d+)$/.exec(ref);
  if (dom) {
    const qid = Number(dom[1]);
    const vm = app.domains.list().find((d) => d.qid === qid);
    if (!vm) throw new QubesXmlError(`reference to unknown domain ${ref}`);
    return vm.name;
  }
  throw new QubesXmlError(`unsupported property reference ${ref}`);
}

function loadProperties(
  app: App,
  store: Properties,
  props: XEl | undefined,
  stage: (s: 2 | 3 | 4) => boolean,
  warn: (msg: string) => void,
): void {
  for (const p of children(props, 'property')) {
    const raw = p.attrs.name ?? '';
    if (DROPPED.has(raw)) continue;
    const name = RENAMED[raw] ?? raw;
    if (!store.has(name)) {
      warn(`ignoring unknown property ${name}`);
      continue;
    }
    const def = store.def(name);
    if (def.readOnly || !stage(def.stage)) continue;
    store.init(name, store.parse(name, propertyText(app, p)));
  }
}

/** Truth values of the legacy `required` attribute (qubes.property.bool). */
const LEGACY_REQUIRED = new Set(['1', 'yes', 'true', 'on']);

/**
 * One `<devices class=..>` element. Like upstream, an assignment whose backend
 * domain is gone or whose mode is unknown is dropped with a warning, and the
 * legacy `required="yes|no"` attribute and `identity` option are understood.
 */
function loadDevices(app: App, vm: Vm, devs: XEl, warn: (msg: string) => void): void {
  const devclass = devs.attrs.class ?? '';
  for (const dev of children(devs, 'device')) {
    const options = children(dev, 'option').map((o) => [o.attrs.name ?? '', o.text] as [string, string]);
    const legacy = dev.attrs.required;
    const mode =
      legacy === undefined
        ? (dev.attrs.mode ?? 'required')
        : LEGACY_REQUIRED.has(legacy.toLowerCase())
          ? 'required'
          : 'auto-attach';
    const backendName = dev.attrs['backend-domain'] ?? '';
    const backend = app.domains.byName(backendName);
    if (!isAssignmentMode(mode) || !backend) {
      warn(`${vm.name}: ignoring ${devclass} device ${backendName}:${dev.attrs.id ?? '*'} (mode ${mode})`);
      continue;
    }
    const identityOption = options.find(([k]) => k === 'identity');
    vm.devices.init(devclass, {
      backend,
      portId: dev.attrs.id ?? '*',
      deviceId: identityOption?.[1] ?? dev.attrs.identity ?? '*',
      mode,
      options: options.filter((o) => o !== identityOption),
    });
  }
}

/**
 * Loads a qubes.xml into an empty app, in upstream's stages: labels, pools,
 * domains with their basic properties, dom0 if missing, global properties,
 * then cross-references, features, tags and device assignments. Returns the storage configuration
 * for the storage layer.
 */
export function loadQubesXml(app: App, xml: string, warn: (msg: string) => void): StorageState {
  // The parser alone reads an element left open as if it closed somewhere, which can drop whole
  // domains that the next save then writes away.
  const valid = XMLValidator.validate(xml);
  if (valid !== true) throw new QubesXmlError(`not well-formed (line ${valid.err.line}): ${valid.err.msg}`);
  let tree: XEl[];
  try {
    tree = toTree(parser.parse(xml) as Node[]);
  } catch (e) {
    throw new QubesXmlError(`not well-formed: ${(e as Error).message}`);
  }
  const root = tree.find((e) => e.name === 'qubes');
  if (!root) throw new QubesXmlError('no <qubes> root element');

  const labels = new LabelRegistry();
  for (const l of children(child(root, 'labels'), 'label')) {
    const id = /^label-(\d+)$/.exec(l.attrs.id ?? '');
    if (!id) throw new QubesXmlError(`bad label id ${l.attrs.id ?? ''}`);
    // As written: admin.label.Create keeps the case the client gave, and upstream reads it back as is.
    labels.add(new Label(Number(id[1]), l.attrs.color ?? '0x000000', l.text.trim()));
  }
  if (labels.list().length > 0) app.labels = labels;

  const pools = children(child(root, 'pools'), 'pool').map((p) => ({ ...p.attrs }));

  const domainEls = children(child(root, 'domains'), 'domain');
  const stubs: [Vm, XEl][] = [];
  for (const d of domainEls) {
    const klass = d.attrs.class ?? '';
    if (!isVmClassName(klass)) throw new QubesXmlError(`unknown domain class ${klass}`);
    const props = child(d, 'properties');
    if (klass === 'AdminVM') {
      const labelEl = children(props, 'property').find((p) => p.attrs.name === 'label');
      const vm = app.createAdminVm(app.labels.get(labelEl ? propertyText(app, labelEl) : 'black'));
      stubs.push([vm, d]);
      continue;
    }
    const basic = (n: string): string | undefined => {
      const p = children(props, 'property').find((x) => x.attrs.name === n);
      return p ? propertyText(app, p) : undefined;
    };
    const name = basic('name');
    const label = basic('label');
    const qid = basic('qid') ?? /^domain-(\d+)$/.exec(d.attrs.id ?? '')?.[1];
    if (!name || !label || qid === undefined)
      throw new QubesXmlError(`domain ${d.attrs.id ?? '?'} lacks name, label or qid`);
    const vm = app.addVm(klass, {
      name,
      label: app.labels.get(label),
      qid: Number(qid),
      uuid: basic('uuid'),
    });
    stubs.push([vm, d]);
  }
  if (!app.domains.byName('dom0')) app.createAdminVm(app.labels.get('black'));

  const store = (h: Vm | App): Properties => h.props;
  for (const [vm, d] of stubs) loadProperties(app, store(vm), child(d, 'properties'), (s) => s <= 2, warn);
  loadProperties(app, store(app), child(root, 'properties'), () => true, warn);

  const volumes = new Map<Vm, Attrs[]>();
  for (const [vm, d] of stubs) {
    loadProperties(app, store(vm), child(d, 'properties'), (s) => s > 2, warn);
    for (const f of children(child(d, 'features'), 'feature'))
      if (!loadMeminfoWriter(vm, f.attrs.name ?? '', f.text)) vm.features.init(f.attrs.name ?? '', f.text);
    for (const t of children(child(d, 'tags'), 'tag')) vm.tags.init(t.attrs.name ?? '');
    for (const devs of children(d, 'devices')) loadDevices(app, vm, devs, warn);
    initPropertyTags(vm);
    const vc = child(d, 'volume-config');
    if (vc)
      volumes.set(
        vm,
        children(vc, 'volume').map((v) => ({ ...v.attrs })),
      );
  }
  return { pools, volumes };
}
