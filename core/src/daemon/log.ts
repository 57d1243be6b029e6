import type { Log } from '../log.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

/** Leveled log lines on stderr: `odysseyd: <level>: <message>`. */
export function stderrLog(minLevel: LogLevel): Log {
  const min = LOG_LEVELS.indexOf(minLevel);
  return (level, message) => {
    if (LOG_LEVELS.indexOf(level) >= min) process.stderr.write(`odysseyd: ${level}: ${message}\n`);
  };
}
