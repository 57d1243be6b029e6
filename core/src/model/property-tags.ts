import type { App } from './app.js';
import type { Vm } from './vm.js';
import { asVm } from './vm-ref.js';

/**
 * The `<property>-<name>` tags upstream's gui, audio and relay extensions keep on a qube, so
 * that qrexec policy can match its GUI domain, audio domain or (of a RemoteVM) relay with
 * @tag:. They follow the guivm, audiovm and relayvm properties.
 */
interface TagKind {
  readonly prop: 'guivm' | 'audiovm' | 'relayvm';
  /**
   * gui.py keeps a tag that stays right; audio.py and relay.py take every tag of the kind off
   * and put the right one back, so a Set to the same value announces its removal and its return.
   */
  readonly keepsCurrent: boolean;
  /** relay.py's creation and load handler is bound to LocalVM, which a RemoteVM is not: it never runs. */
  readonly fixedOnCreation: boolean;
}

const KINDS: readonly TagKind[] = [
  { prop: 'guivm', keepsCurrent: true, fixedOnCreation: true },
  { prop: 'audiovm', keepsCurrent: false, fixedOnCreation: true },
  { prop: 'relayvm', keepsCurrent: false, fixedOnCreation: false },
];

function wantedTag(vm: Vm, prop: TagKind['prop']): string | null {
  if (!vm.props.has(prop)) return null;
  const target = asVm(vm.props.tryGet(prop));
  return target ? `${prop}-${target.name}` : null;
}

/**
 * Creation and loading, before anyone listens, without events: as upstream's gui and audio
 * handlers of domain-init and domain-load, a qube that lacks the tag of its guivm or audiovm gets
 * it and loses the other tags of that kind (a qubes.xml edited by hand, a disposable's copy of
 * its template's tags). A qube that has the right tag keeps any other, as upstream's does.
 */
export function initPropertyTags(vm: Vm): void {
  for (const { prop, fixedOnCreation } of KINDS) {
    const wanted = fixedOnCreation ? wantedTag(vm, prop) : null;
    if (!wanted || vm.tags.has(wanted)) continue;
    for (const tag of vm.tags.inOrder()) if (tag.startsWith(`${prop}-`)) vm.tags.forget(tag);
    vm.tags.init(wanted);
  }
}

function syncTags(vm: Vm, { prop, keepsCurrent }: TagKind): void {
  const wanted = wantedTag(vm, prop);
  for (const tag of vm.tags.inOrder()) {
    if (tag.startsWith(`${prop}-`) && !(keepsCurrent && tag === wanted)) vm.tags.remove(tag);
  }
  if (wanted) vm.tags.add(wanted);
}

/** Each set or reset of the property (a global default's fan-out included) brings its tags in line. */
export function installPropertyTags(app: App): void {
  app.events.subscribe((e) => {
    const match = /^property-(?:set|reset):(guivm|audiovm|relayvm)$/.exec(e.name);
    const kind = match && KINDS.find((k) => k.prop === match[1]);
    if (e.subject && kind) syncTags(e.subject, kind);
  });
}
