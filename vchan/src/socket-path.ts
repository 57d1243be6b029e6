import { join } from 'node:path';

/** Directory of the vchan sockets when the caller names none (as vchan-socket's libvchan does). */
export function defaultSocketDir(): string {
  return process.env['VCHAN_SOCKET_DIR'] || '/var/run/vchan';
}

/**
 * Where the server of (serverDomain, clientDomain, port) binds: the same name
 * scheme as upstream's vchan-socket, so both ends agree without any registry.
 */
export function vchanSocketPath(
  dir: string,
  serverDomain: string,
  clientDomain: string,
  port: number,
): string {
  return join(dir, `vchan.${serverDomain}.${clientDomain}.${port}.sock`);
}
