import { formatBytes } from '../size.js';

/** A stream that may be a terminal (process.stderr is; the buffers tests pass are not). */
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** Progress is drawn only on a terminal: redirected output and CI logs get nothing at all. */
export function isTty(stream: unknown): stream is ProgressStream {
  return (stream as ProgressStream | undefined)?.isTTY === true;
}

const MiB = 1024 * 1024;
const REDRAW_MS = 100;
const CLEAR_EOL = '\x1b[K';

export interface Progress {
  /** `done` bytes so far (monotonic). */
  update(done: number): void;
  /** Draws the final state and moves to the next line. */
  finish(): void;
  /** Erases the line (the error message that follows says what happened). */
  abort(): void;
}

const SILENT: Progress = { update() {}, finish() {}, abort() {} };

function rate(bytes: number, seconds: number): string {
  return `${(seconds > 0 ? bytes / seconds / MiB : 0).toFixed(1)} MiB/s`;
}

/**
 * A one-line transfer bar: `label [#####.....]  45%  1.2 GiB / 2.0 GiB  310.5 MiB/s`, redrawn at most
 * ten times a second; without a known total, bytes and rate only.
 */
export function transferProgress(
  stream: unknown,
  label: string,
  total: number | undefined,
  now: () => number = () => performance.now(),
): Progress {
  if (!isTty(stream)) return SILENT;
  const start = now();
  let last = -Infinity;
  let done = 0;
  const draw = () => {
    const seconds = (now() - start) / 1000;
    const speed = rate(done, seconds);
    if (total === undefined || total <= 0) {
      stream.write(`\r${label}  ${formatBytes(done)}  ${speed}${CLEAR_EOL}`);
      return;
    }
    const fraction = Math.min(1, done / total);
    const percent = `${Math.floor(fraction * 100)}%`.padStart(4);
    const tail = `${percent}  ${formatBytes(done)} / ${formatBytes(total)}  ${speed}`;
    const width = Math.max(10, Math.min(40, (stream.columns ?? 80) - label.length - tail.length - 6));
    const filled = Math.round(fraction * width);
    stream.write(`\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${tail}${CLEAR_EOL}`);
  };
  return {
    update(bytes) {
      done = bytes;
      const t = now();
      if (t - last < REDRAW_MS) return;
      last = t;
      draw();
    },
    finish() {
      draw();
      stream.write('\n');
    },
    abort() {
      stream.write(`\r${CLEAR_EOL}`);
    },
  };
}

export interface Spinner {
  stop(success: boolean): void;
}

/**
 * For work done on the server that reports no progress (a volume clone): a spinner with the elapsed
 * time, then `label: done in 3.2 s` on success.
 */
export function spinner(
  stream: unknown,
  label: string,
  now: () => number = () => performance.now(),
): Spinner {
  if (!isTty(stream)) return { stop() {} };
  const frames = ['|', '/', '-', '\\'];
  const start = now();
  let frame = 0;
  const elapsed = () => ((now() - start) / 1000).toFixed(1);
  const draw = () => {
    stream.write(`\r${label} ${frames[frame++ % frames.length] ?? ''} ${elapsed()} s${CLEAR_EOL}`);
  };
  draw();
  const timer = setInterval(draw, REDRAW_MS);
  timer.unref();
  return {
    stop(success) {
      clearInterval(timer);
      stream.write(success ? `\r${label}: done in ${elapsed()} s${CLEAR_EOL}\n` : `\r${CLEAR_EOL}`);
    },
  };
}
