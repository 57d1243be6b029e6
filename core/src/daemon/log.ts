import type { Log } from '../log.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

/** sd-daemon(3)'s priority prefixes, which journald reads off a service's stderr. */
const PRIORITY: Readonly<Record<LogLevel, string>> = { error: '<3>', warn: '<4>', info: '<6>', debug: '<7>' };

/** Where log lines go: the part of a stream the log needs. */
export interface LogStream {
  readonly isTTY?: boolean;
  write(text: string): unknown;
}

/**
 * Leveled log lines on stderr, `odysseyd: <level>: <message>`. When stderr is
 * not a terminal (a systemd service, a pipe) every line, those of a multi-line
 * message included, starts with its priority, so the journal files it right.
 */
export function stderrLog(minLevel: LogLevel, out: LogStream = process.stderr): Log {
  const min = LOG_LEVELS.indexOf(minLevel);
  const prefix = (level: LogLevel) => (out.isTTY ? '' : PRIORITY[level]);
  return (level, message) => {
    if (LOG_LEVELS.indexOf(level) < min) return;
    const lines = `odysseyd: ${level}: ${message}`.split('\n');
    out.write(lines.map((line) => `${prefix(level)}${line}\n`).join(''));
  };
}
