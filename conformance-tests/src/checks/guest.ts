import { Unsupported, type CheckContext } from '../check.js';
import type { Guests } from '../guests.js';

/** The backend's guests, or the reason (declared or the suite's) why the check cannot enter them. */
export function guestsOf(ctx: CheckContext): Guests {
  if (ctx.guests instanceof Unsupported) throw ctx.guests;
  return ctx.guests;
}
