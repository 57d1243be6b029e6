import { QubesValueError } from '../../model/errors.js';
import type { CallContext } from '../call-context.js';

const MAX_NOTES_BYTES = 256000;

/**
 * Characters a terminal or GUI shows as themselves. Upstream asks libqubes-pure;
 * we keep printable Unicode and replace controls, format characters, unpaired
 * surrogates and unassigned code points (besides tab and newline) with '_'.
 */
function safeForDisplay(ch: string): boolean {
  if (ch === '\t' || ch === '\n') return true;
  return !/[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}]/u.test(ch);
}

export const notes = {
  get: (ctx: CallContext): Promise<string> => ctx.services.vmFiles.readNotes(ctx.dest),
  set: async (ctx: CallContext): Promise<undefined> => {
    if (ctx.payload.length > MAX_NOTES_BYTES) throw new QubesValueError('Notes are too long');
    const text = [...ctx.payload.toString('utf8')].map((ch) => (safeForDisplay(ch) ? ch : '_')).join('');
    await ctx.services.vmFiles.writeNotes(ctx.dest, text);
    return undefined;
  },
};
