import { Unsupported, type CheckContext } from '../check.js';
import type { Guests } from '../guests.js';

/** The backend's guests, or `unsupported` for a backend whose domains the suite cannot enter. */
export function guestsOf(ctx: CheckContext): Guests {
  if (!ctx.guests)
    throw new Unsupported(
      `running programs inside ${ctx.backend} guests is not supported: the suite enters only process ` +
        'and kvm domains',
    );
  return ctx.guests;
}
