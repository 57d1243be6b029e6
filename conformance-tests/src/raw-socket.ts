import { createConnection } from 'node:net';

/**
 * Writes `request` to the admin socket exactly as given, half-closes, and returns every byte of the
 * reply. The API checks compare these bytes with upstream's captures, which a typed client would hide
 * (and framing errors cannot even be produced through one).
 */
export function exchange(socketPath: string, request: string | Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(socketPath);
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // The daemon may drop a malformed request without reading all of it; what it sent is the answer.
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') resolve(Buffer.concat(chunks));
      else reject(err);
    });
    socket.on('close', () => resolve(Buffer.concat(chunks)));
    socket.end(typeof request === 'string' ? Buffer.from(request, 'latin1') : request);
  });
}

/** `method+arg dom0 name dest\0payload`: the request dom0's own client sends. */
export function request(service: string, dest: string, payload = ''): string {
  return `${service} dom0 name ${dest}\0${payload}`;
}

/** Bytes as Python's repr would show them, so a report's reason can be compared with the reference by eye. */
export function showBytes(data: Buffer | string): string {
  const buf = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
  let out = '';
  for (const byte of buf) {
    if (byte === 0) out += '\\x00';
    else if (byte === 0x0a) out += '\\n';
    else if (byte < 0x20 || byte > 0x7e) out += `\\x${byte.toString(16).padStart(2, '0')}`;
    else out += String.fromCharCode(byte);
  }
  return `b'${out}'`;
}
