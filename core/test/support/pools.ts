import type { PoolDirectory } from '../../src/model/app.js';

/** A pool directory with no pools, for an App made without storage. */
export const noPools: PoolDirectory = { has: () => false, names: () => [], defaultPoolName: () => undefined };
