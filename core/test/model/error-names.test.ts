import { EXCEPTION_TYPES } from '@odyssey/wire';
import { describe, expect, it } from 'vitest';

import * as errors from '../../src/model/errors.js';

describe("the daemon's exception types", () => {
  it('are exactly the names the wire protocol lists, so clients can branch on every one', () => {
    const sent = Object.values(errors)
      .filter(
        (v): v is typeof errors.QubesException =>
          typeof v === 'function' &&
          (v === errors.QubesException || v.prototype instanceof errors.QubesException),
      )
      .map((cls) => cls.name);
    expect([...sent].sort()).toEqual([...EXCEPTION_TYPES].sort());
  });
});
