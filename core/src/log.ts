/** The daemon's leveled log; where lines go (stderr, journald) is the composition root's choice. */
export type Log = (level: 'debug' | 'info' | 'warn' | 'error', message: string) => void;
