import type { BackendUnderTest } from '../backend-under-test.js';
import type { HalGuest } from '../hal-guests.js';

/** What hal checks drive: the backend the suite loaded itself, and a guest of the kind it declares. */
export interface HalContext {
  readonly backend: BackendUnderTest;
  readonly guest: HalGuest;
  readonly metrics: Record<string, number>;
}

/** The one domain the hal lifecycle and vchan checks define, start and stop again. */
export const HAL_DOMAIN = 'conf-hal';
