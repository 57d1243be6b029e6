import type { Socket } from 'node:net';

/**
 * One request per proxy connection, as a JSON line; the proxy answers one JSON line once the
 * vchan is established (or failed), and from then on the connection carries the vchan's bytes.
 */
export type ProxyRequest =
  | {
      readonly op: 'listen';
      readonly domain: string;
      readonly port: number;
      readonly readMin?: number;
      readonly writeMin?: number;
    }
  | { readonly op: 'connect'; readonly domain: string; readonly port: number; readonly timeoutMs?: number };

export type ProxyReply = { readonly ok: true } | { readonly ok: false; readonly error: string };

/** A request or reply line is small; anything longer is not our protocol. */
const MAX_LINE = 4096;

/**
 * Reads one `\n`-terminated line and leaves every byte after it in the socket's stream
 * (unshifted), since the vchan's data may follow in the same chunk.
 */
export function readLine(socket: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf(0x0a);
      if (end < 0) {
        if (buffered.length > MAX_LINE) finish(new Error('vchan proxy: line too long'));
        return;
      }
      socket.pause();
      const rest = buffered.subarray(end + 1);
      if (rest.length > 0) socket.unshift(rest);
      finish(undefined, buffered.subarray(0, end).toString('utf8'));
    };
    const onEnd = (): void => finish(new Error('vchan proxy: connection closed before a full line'));
    const finish = (error?: Error, line?: string): void => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onEnd);
      if (line === undefined) reject(error ?? new Error('vchan proxy: no line'));
      else resolve(line);
    };
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('error', onEnd);
  });
}

export function parseRequest(line: string): ProxyRequest {
  const value = JSON.parse(line) as Partial<Record<string, unknown>>;
  const { op, domain, port } = value;
  if ((op !== 'listen' && op !== 'connect') || typeof domain !== 'string' || !Number.isInteger(port))
    throw new Error(`vchan proxy: malformed request ${JSON.stringify(line.slice(0, 200))}`);
  return value as ProxyRequest;
}
