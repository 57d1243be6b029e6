import type { VmmCapabilities } from '@odyssey/hal';
import { expect, it } from 'vitest';

import { runCheck, type Check } from '../src/check.js';

// Nothing here is declared: a check without `needs` never reads the capabilities.
const caps = {} as VmmCapabilities;

it("fails a check that outlives its own timeoutMs with that limit, not the suite's default", async () => {
  const hangs: Check<null> = {
    id: 'network.start-hangs',
    category: 'network',
    timeoutMs: 20,
    run: () => new Promise<void>(() => undefined),
  };
  expect(await runCheck(hangs, null, caps)).toMatchObject({
    status: 'fail',
    reason: 'network.start-hangs did not finish within 20 ms',
  });
});
