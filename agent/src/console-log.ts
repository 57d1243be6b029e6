import { constants, fstatSync, openSync, writeSync } from 'node:fs';
import { isatty } from 'node:tty';

/**
 * The log of a domain's long-running program: lines on stderr, the domain's console (a pty the
 * VMM relays, a pipe, a file, the journal). A console can stop such a program in two ways:
 *
 * - It goes away: libvirt's LXC controller closes a container's pty as it kills the container, a
 *   pipe's reader exits. A write then fails with EIO or EPIPE, which the stream reports as an
 *   'error' event; unhandled, that ended the program (an agent that died of it took its domain
 *   with it). stdout's and stderr's write errors are taken here.
 * - Nobody reads it: libvirt_lxc relays a container's pty only while a client holds its host end,
 *   so without one a container's writes to its console block once ~40 KB wait (measured: the 88th
 *   line of 460 bytes to /dev/console waited until the container was killed). Node writes to a
 *   TTY or a pipe synchronously, so that write would stop the whole program. On a TTY or a pipe,
 *   lines go through a descriptor of their own that does not block.
 *
 * A line that does not fit, or has nowhere to go, is lost.
 */
export function consoleLog(prefix: string): (message: string) => void {
  for (const stream of [process.stdout, process.stderr]) stream.on('error', ignoreLostConsole);
  const fd = nonBlockingStderr();
  if (fd === undefined) return (message) => void process.stderr.write(`${prefix}: ${message}\n`);
  return (message) => {
    try {
      writeSync(fd, `${prefix}: ${message}\n`);
    } catch {
      // Full (EAGAIN) or gone (EIO, EPIPE): the line is lost, the program goes on.
    }
  };
}

/** stderr opened anew without blocking when it is a TTY or a pipe (the console's own description, the init's too, keeps blocking). */
function nonBlockingStderr(): number | undefined {
  try {
    if (!isatty(2) && !fstatSync(2).isFIFO()) return undefined;
    return openSync('/proc/self/fd/2', constants.O_WRONLY | constants.O_NOCTTY | constants.O_NONBLOCK);
  } catch {
    // No /proc, or a pipe with no reader left: stderr as it is.
    return undefined;
  }
}

function ignoreLostConsole(): void {
  // Nowhere left to report it: the console is where it would go.
}
