import { closeSync, readSync, writeSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, expect, it } from 'vitest';

import { EventPoller } from '../src/xen/event-watch.js';
import { importKoffi } from '../src/xen/koffi.js';

// An eventfd stands in for /dev/xen/evtchn: readable while its counter is not zero, as the event
// channel device is while a notification is pending.
const koffi = await importKoffi();
const eventfd = koffi.load('libc.so.6').func('int eventfd(unsigned int initval, int flags)') as (
  initval: number,
  flags: number,
) => number;
const EFD_CLOEXEC = 0o2000000;
const opened: number[] = [];

function newEventfd(): number {
  const fd = eventfd(0, EFD_CLOEXEC);
  if (fd < 0) throw new Error(`eventfd failed (errno ${koffi.errno()})`);
  opened.push(fd);
  return fd;
}

function notify(fd: number): void {
  const one = Buffer.alloc(8);
  one.writeBigUInt64LE(1n);
  writeSync(fd, one);
}

/** What libxenvchan_wait does with the device: takes the pending notification. */
function consume(fd: number): bigint {
  const value = Buffer.alloc(8);
  readSync(fd, value);
  return value.readBigUInt64LE();
}

/** The promise's value, or 'pending' when it has not settled within `ms`. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | 'pending'> {
  return Promise.race([promise, sleep(ms).then(() => 'pending' as const)]);
}

afterAll(() => {
  for (const fd of opened) closeSync(fd);
});

const poller = new EventPoller(koffi);

it('answers a notification on the event loop, and only the watch whose fd has one', async () => {
  const a = newEventfd();
  const b = newEventfd();
  const watchA = poller.watch(a);
  const watchB = poller.watch(b);
  const nextA = watchA.next();
  const nextB = watchB.next();
  expect(await within(nextA, 100)).toBe('pending');
  notify(a);
  expect(await within(nextA, 5000)).toBe(true);
  expect(await within(nextB, 100)).toBe('pending');
  expect(consume(a)).toBe(1n);
  // Consumed: the next wait waits again, until the next notification.
  const again = watchA.next();
  expect(await within(again, 100)).toBe('pending');
  notify(a);
  notify(a);
  expect(await within(again, 5000)).toBe(true);
  expect(consume(a)).toBe(2n);
  watchB.wake();
  expect(await nextB).toBe(false);
  watchA.close();
  watchB.close();
});

it('wake() ends a pending wait with false, or the next one when none is pending', async () => {
  const fd = newEventfd();
  const watch = poller.watch(fd);
  const pending = watch.next();
  watch.wake();
  expect(await pending).toBe(false);
  watch.wake();
  expect(await within(watch.next(), 1000)).toBe(false);
  // The wake is used up: a wait after it is a real one again.
  const real = watch.next();
  expect(await within(real, 100)).toBe('pending');
  notify(fd);
  expect(await within(real, 5000)).toBe(true);
  watch.close();
  await expect(watch.next()).rejects.toThrow(/closed/);
});

it('gives handles back: thousands of watches made, woken and closed', async () => {
  const fd = newEventfd();
  for (let round = 0; round < 2000; round++) {
    const watch = poller.watch(fd);
    const next = watch.next();
    if (round % 2 === 0) {
      notify(fd);
      expect(await next).toBe(true);
      consume(fd);
    } else {
      watch.wake();
      expect(await next).toBe(false);
    }
    watch.close();
  }
  // The close callbacks run on the loop's next turn; a fresh watch still works after them.
  await sleep(10);
  const last = poller.watch(fd);
  const next = last.next();
  notify(fd);
  expect(await within(next, 5000)).toBe(true);
  consume(fd);
  last.close();
});

it('refuses an fd that cannot be watched, naming libuv reason', () => {
  expect(() => poller.watch(-1)).toThrow(/uv_poll_init: /);
});
