import type { Clock } from '../../clock.js';
import { ProtocolError } from '../../model/errors.js';
import { featureTrue } from '../../model/features.js';
import { parsePythonInt } from '../../model/validate.js';
import type { Vm } from '../../model/vm.js';
import type { CallContext } from '../call-context.js';
import type { MethodSpec } from '../method.js';

/** The bytes Python's bytes.strip() removes from both ends: ASCII whitespace. */
const PY_WHITESPACE = new Set([0x20, 0x09, 0x0a, 0x0d, 0x0b, 0x0c]);

function pyStrip(bytes: Buffer): Buffer {
  let start = 0;
  let end = bytes.length;
  while (start < end && PY_WHITESPACE.has(bytes[start] ?? 0)) start++;
  while (end > start && PY_WHITESPACE.has(bytes[end - 1] ?? 0)) end--;
  return bytes.subarray(start, end);
}

/** bytes.isdigit(): non-empty and ASCII digits only. */
const DIGITS = /^[0-9]+$/;

/** Python's datetime.today().strftime('%Y-%m-%d %H:%M:%S'): dom0's local time. */
function localDate(ms: number): string {
  const d = new Date(ms);
  const two = (n: number): string => String(n).padStart(2, '0');
  return (
    `${String(d.getFullYear()).padStart(4, '0')}-${two(d.getMonth() + 1)}-${two(d.getDate())} ` +
    `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`
  );
}

/**
 * upstream's _feature_of_update: `updates-available` as a feature boolean,
 * `last-updates-check` now, and `last-update` now when updates that were
 * pending are reported gone (they have been installed).
 */
function recordUpdates(qube: Vm, available: boolean, now: string): void {
  if (featureTrue(qube.features.get('updates-available')) && !available)
    qube.features.set('last-update', now);
  qube.features.set('updates-available', available ? '1' : '');
  qube.features.set('last-updates-check', now);
}

/**
 * qubes.NotifyUpdates of upstream's misc socket: a qube reports how many
 * updates it has (payload: decimal digits, surrounding whitespace allowed;
 * anything else is ProtocolError "Update count is not a digit"; more digits
 * than Python's int() converts get no answer). An updateable caller
 * (TemplateVM, StandaloneVM) is trusted about itself. Another's report
 * is a hint for the nearest updateable qube up its template chain, taken only
 * when it says there are updates, that template is not running (it reports
 * for itself then), and none of the caller's volumes is outdated (the
 * template was probably updated since the caller started).
 */
export function notifyUpdatesMethods(clock: Clock): MethodSpec[] {
  const handler = async (ctx: CallContext): Promise<undefined> => {
    const count = pyStrip(ctx.payload).toString('latin1');
    if (!DIGITS.test(count)) throw new ProtocolError('Update count is not a digit');
    // Upstream's int() of more digits than it converts raises ValueError: the call ends without
    // an answer, changing nothing.
    const parsed = parsePythonInt(count);
    if (parsed === undefined) throw new Error(`update count of ${count.length} digits`);
    const available = parsed > 0;
    const src = ctx.src;
    if (src.bool('updateable')) {
      recordUpdates(src, available, localDate(clock.now()));
      return undefined;
    }
    let template = src.template;
    while (template !== null && !template.bool('updateable')) template = template.template;
    if (template === null || template.isRunning || !available) return undefined;
    for (const volume of ctx.services.storage.of(src).values())
      if (await volume.isOutdated()) return undefined;
    recordUpdates(template, available, localDate(clock.now()));
    return undefined;
  };
  return [
    {
      name: 'qubes.NotifyUpdates',
      scope: 'global',
      access: 'w',
      dest: 'dom0',
      arg: 'none',
      payload: 'required',
      noPolicy: true,
      handler,
    },
  ];
}
