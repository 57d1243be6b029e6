import type { App } from './app.js';
import { validateTag } from './tags.js';
import type { Vm } from './vm.js';

const CREATED_BY = 'created-by-';

/**
 * What a qube tagged created-by-<creator> takes from its creator, as upstream's admin and gui
 * extensions give it: the tags the creator's feature `tag-created-vm-with` lists (space-separated;
 * a name that is no valid tag is left out, as policy could never match it) and, with the feature
 * `set-created-guivm`, that qube as its guivm (when it exists).
 */
function creatorGifts(app: App, tag: string): { tags: string[]; guivm: Vm | undefined } {
  const creator = tag.startsWith(CREATED_BY) ? app.domains.byName(tag.slice(CREATED_BY.length)) : undefined;
  if (!creator) return { tags: [], guivm: undefined };
  const tags = (creator.features.get('tag-created-vm-with') ?? '').split(/\s+/).filter((name) => {
    try {
      validateTag(name);
      return true;
    } catch {
      return false;
    }
  });
  const guivm = creator.features.get('set-created-guivm');
  return { tags, guivm: guivm ? app.domains.byName(guivm) : undefined };
}

/** Gives a qube its creator's gifts as its created-by tag is added. */
export function installCreatorTags(app: App): void {
  app.events.subscribe((event) => {
    const vm = event.subject;
    const prefix = 'domain-tag-add:';
    if (!vm || !event.name.startsWith(`${prefix}${CREATED_BY}`)) return;
    const { tags, guivm } = creatorGifts(app, event.name.slice(prefix.length));
    for (const tag of tags) vm.tags.add(tag);
    if (guivm && vm.props.has('guivm')) vm.props.set('guivm', guivm);
  });
}

/**
 * The same for a new disposable's created-by tags taken from its disposable template (upstream adds
 * them with events its extensions act on; ours are copied before the qube is announced, silently).
 */
export function giveInheritedCreatorGifts(vm: Vm): void {
  for (const tag of vm.tags.inOrder()) {
    const { tags, guivm } = creatorGifts(vm.app, tag);
    for (const gift of tags) vm.tags.init(gift);
    if (guivm && vm.props.has('guivm')) vm.props.init('guivm', guivm);
  }
}
