/**
 * The log of a domain's long-running program: lines on stderr, the domain's console (a pty the
 * VMM relays, a pipe, the journal). The console can go away under a running program: libvirt's
 * LXC controller closes the container's pty as it kills the container, a pipe's reader exits. A
 * write then fails with EIO or EPIPE, which the stream reports as an 'error' event; unhandled, that
 * ends the program with an uncaught exception (an agent that died of it took its domain with it).
 * So stdout's and stderr's write errors are taken here, and a line that cannot be written is lost.
 */
export function consoleLog(prefix: string): (message: string) => void {
  for (const stream of [process.stdout, process.stderr]) stream.on('error', ignoreLostConsole);
  return (message) => void process.stderr.write(`${prefix}: ${message}\n`);
}

function ignoreLostConsole(): void {
  // Nowhere left to report it: the console is where it would go.
}
