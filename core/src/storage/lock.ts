/**
 * Serialises async operations on one volume: a start must not interleave with
 * a commit or an import, exactly like upstream's per-volume asyncio.Lock.
 */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn);
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}
