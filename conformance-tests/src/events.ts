import type { AdminClient, AdminEvent } from '@odyssey/client';

/**
 * Subscribes to admin.Events and resolves once the subscription is live; `next` then waits for the first
 * later event that `matches`, failing after `timeoutMs`. Subscribing before acting is what makes the
 * check see the event its own call causes.
 */
export async function watchEvents(
  client: AdminClient,
  matches: (ev: AdminEvent) => boolean,
  timeoutMs = 30_000,
): Promise<{ next: Promise<AdminEvent> }> {
  const abort = new AbortController();
  const stream = client.events('dom0', abort.signal);
  await stream.next();
  const next = (async () => {
    const timer = setTimeout(() => abort.abort(), timeoutMs);
    try {
      for await (const ev of stream) if (matches(ev)) return ev;
      throw new Error(`no matching event within ${timeoutMs} ms`);
    } finally {
      clearTimeout(timer);
      abort.abort();
    }
  })();
  // A check that fails before awaiting `next` must not leave an unhandled rejection behind.
  next.catch(() => undefined);
  return { next };
}
