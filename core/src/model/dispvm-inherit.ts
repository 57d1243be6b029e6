import { giveInheritedCreatorGifts } from './creator-tags.js';
import type { Vm } from './vm.js';

/** Never copied: identity, and the link to the disposable template itself. */
const NOT_CLONED = new Set(['uuid', 'name', 'qid', 'dispid', 'template']);

/**
 * What a new disposable takes from its disposable template, as upstream's
 * DispVM constructor does before anyone can watch (so no events): every
 * property the template has set explicitly and the disposable still has at
 * its default, the firewall rules, the features (but the template's own
 * preload bookkeeping) and the tags.
 */
export function inheritFromDispvmTemplate(disp: Vm, template: Vm): void {
  for (const [name, value] of template.props.explicit()) {
    if (NOT_CLONED.has(name) || !disp.props.has(name) || !disp.props.isDefault(name)) continue;
    if (disp.props.def(name).readOnly) continue;
    disp.props.init(name, value);
  }
  disp.firewall = template.firewall;
  for (const [name, value] of template.features.entries()) {
    if (!name.startsWith('preload-dispvm')) disp.features.init(name, value);
  }
  for (const tag of template.tags.inOrder()) disp.tags.init(tag);
  giveInheritedCreatorGifts(disp);
}
