import type { Command } from 'commander';

import type { CliIo } from '../io.js';
import { registerPool } from './pool.js';
import { registerVolume } from './volume.js';

/** `qvm volume ...` (like qvm-volume) and `qvm pool ...` (like qvm-pool). */
export function registerStorage(program: Command, io: CliIo): void {
  registerVolume(program, io);
  registerPool(program, io);
}
