import type { App } from './app.js';
import type { Vm } from './vm.js';
import { asVm } from './vm-ref.js';

/**
 * The `guivm-<name>` and `audiovm-<name>` tags upstream's gui and audio
 * extensions keep on every qube, so that qrexec policy can match a qube's
 * GUI or audio domain with @tag:. They follow the guivm/audiovm properties.
 */
const KINDS = ['guivm', 'audiovm'] as const;

function wantedTag(vm: Vm, kind: (typeof KINDS)[number]): string | null {
  if (!vm.props.has(kind)) return null;
  const target = asVm(vm.props.tryGet(kind));
  return target ? `${kind}-${target.name}` : null;
}

/** Brings the tags in line with the properties; `silent` for creation and loading, before anyone listens. */
export function syncGuiAudioTags(vm: Vm, silent: boolean): void {
  for (const kind of KINDS) {
    const wanted = wantedTag(vm, kind);
    if (!silent) {
      for (const tag of vm.tags.inOrder())
        if (tag.startsWith(`${kind}-`) && tag !== wanted) vm.tags.remove(tag);
    }
    if (wanted && !vm.tags.has(wanted)) {
      if (silent) vm.tags.init(wanted);
      else vm.tags.add(wanted);
    }
  }
}

export function installGuiAudioTags(app: App): void {
  app.events.subscribe((e) => {
    if (e.subject && /^property-(set|reset):(guivm|audiovm)$/.test(e.name))
      syncGuiAudioTags(e.subject, false);
  });
}
