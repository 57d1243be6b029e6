/** Performs one call and returns the OK body; every API area is written against this alone. */
export type Caller = (
  method: string,
  dest: string,
  arg?: string,
  payload?: string | Uint8Array,
) => Promise<Buffer>;

/**
 * Performs one call whose payload is `prefix` followed by a byte stream of any size, and returns the OK
 * body; `onProgress` sees the running count of stream bytes sent (the prefix not included).
 */
export type Uploader = (
  method: string,
  dest: string,
  arg: string,
  prefix: string | Uint8Array,
  source: AsyncIterable<Uint8Array | string>,
  options?: { onProgress?: (sent: number) => void; signal?: AbortSignal },
) => Promise<Buffer>;

/** Splits a "one item per line" body; every line ends with `\n`, so an empty body is an empty list. */
export function lines(body: Buffer | string): string[] {
  const text = typeof body === 'string' ? body : body.toString('utf8');
  const items = text.split('\n');
  if (items[items.length - 1] === '') items.pop();
  return items;
}

/** Parses `k=v` lines (volume and pool info) into a record, keeping the server's order. */
export function keyValueLines(body: Buffer): Record<string, string> {
  const result: Record<string, string> = {};
  for (const line of lines(body)) {
    const eq = line.indexOf('=');
    if (eq < 0) continue;
    result[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return result;
}
