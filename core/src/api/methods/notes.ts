import { ProtocolError } from '../../model/errors.js';
import type { CallContext } from '../call-context.js';

const MAX_NOTES_BYTES = 256000;

/**
 * Code points libqubes-pure calls safe for display: printable ASCII, and
 * beyond it letters, digits, punctuation and math/currency symbols of scripts
 * that render left to right without complex shaping (Latin, Greek, Cyrillic,
 * CJK, Hangul, kana, Bopomofo, and the common/inherited ones). Marks, spaces,
 * other symbols (emoji), controls, format and private-use characters are not.
 */
const SAFE_CATEGORY = /^[\p{L}\p{Nd}\p{Nl}\p{No}\p{Pd}\p{Ps}\p{Pe}\p{Pc}\p{Po}\p{Pi}\p{Pf}\p{Sm}\p{Sc}]$/u;
const SAFE_SCRIPT =
  /^[\p{sc=Zyyy}\p{sc=Zinh}\p{sc=Latn}\p{sc=Grek}\p{sc=Cyrl}\p{sc=Hani}\p{sc=Hang}\p{sc=Hira}\p{sc=Kana}\p{sc=Bopo}\p{sc=Brai}]$/u;

/** Common-script characters whose bidirectional class is Arabic Letter: right-to-left, so not safe. */
function rightToLeftCommon(cp: number): boolean {
  return (
    cp === 0x061b ||
    cp === 0x061f ||
    cp === 0x0640 ||
    (cp >= 0x1ec71 && cp <= 0x1ecb4) ||
    (cp >= 0x1ed01 && cp <= 0x1ed3d)
  );
}

function safeForDisplay(cp: number): boolean {
  if (cp < 0x80) return cp >= 0x20 && cp < 0x7f;
  const ch = String.fromCodePoint(cp);
  return SAFE_CATEGORY.test(ch) && SAFE_SCRIPT.test(ch) && !rightToLeftCommon(cp);
}

/** Bytes a UTF-8 sequence starting with `lead` needs, and the range its second byte must be in. */
function sequenceOf(lead: number): { length: number; lo: number; hi: number } | undefined {
  if (lead >= 0xc2 && lead <= 0xdf) return { length: 2, lo: 0x80, hi: 0xbf };
  if (lead === 0xe0) return { length: 3, lo: 0xa0, hi: 0xbf };
  if (lead === 0xed) return { length: 3, lo: 0x80, hi: 0x9f };
  if (lead >= 0xe1 && lead <= 0xef) return { length: 3, lo: 0x80, hi: 0xbf };
  if (lead === 0xf0) return { length: 4, lo: 0x90, hi: 0xbf };
  if (lead === 0xf4) return { length: 4, lo: 0x80, hi: 0x8f };
  if (lead >= 0xf1 && lead <= 0xf3) return { length: 4, lo: 0x80, hi: 0xbf };
  return undefined;
}

/** Python's bytes.decode('utf8') error text for the first invalid sequence, or undefined when valid. */
function utf8Error(buf: Buffer): string | undefined {
  const where = (start: number, end: number, reason: string): string =>
    end - start === 1
      ? `'utf-8' codec can't decode byte 0x${(buf[start] ?? 0).toString(16).padStart(2, '0')} in position ${start}: ${reason}`
      : `'utf-8' codec can't decode bytes in position ${start}-${end - 1}: ${reason}`;
  let i = 0;
  while (i < buf.length) {
    const lead = buf[i] ?? 0;
    if (lead < 0x80) {
      i++;
      continue;
    }
    const seq = sequenceOf(lead);
    if (!seq) return where(i, i + 1, 'invalid start byte');
    let n = 1;
    while (n < seq.length) {
      if (i + n >= buf.length) return where(i, buf.length, 'unexpected end of data');
      const b = buf[i + n] ?? 0;
      const [lo, hi] = n === 1 ? [seq.lo, seq.hi] : [0x80, 0xbf];
      if (b < lo || b > hi) return where(i, i + n, 'invalid continuation byte');
      n++;
    }
    i += n;
  }
  return undefined;
}

export const notes = {
  get: (ctx: CallContext): Promise<string> => ctx.services.vmFiles.readNotes(ctx.dest),
  /** Each unsafe character becomes '_' (tab and newline stay), as upstream's libqubes-pure check does. */
  set: async (ctx: CallContext): Promise<undefined> => {
    if (ctx.payload.length > MAX_NOTES_BYTES) {
      throw new ProtocolError(
        `Maximum note size is ${MAX_NOTES_BYTES} bytes (${ctx.payload.length} bytes received)`,
      );
    }
    const invalid = utf8Error(ctx.payload);
    if (invalid !== undefined) throw new ProtocolError(`Unable to sanitise qube notes: ${invalid}`);
    let text = '';
    for (const ch of ctx.payload.toString('utf8')) {
      const cp = ch.codePointAt(0) ?? 0;
      text += safeForDisplay(cp) || ch === '\t' || ch === '\n' ? ch : '_';
    }
    await ctx.services.vmFiles.writeNotes(ctx.dest, text);
    return undefined;
  },
};
