/**
 * Upstream's qubes.VMExec argument (qubesadmin.utils.encode_for_vmexec): the words' UTF-8 bytes,
 * each byte outside [A-Za-z0-9_.] written `-HH` (upper-case hex) except `-` itself, written `--`;
 * the words joined by `+`. The result fits a qrexec service argument, which allows no other bytes.
 */
export function encodeForVmExec(words: readonly string[]): string {
  return words.map(encodeWord).join('+');
}

function encodeWord(word: string): string {
  let encoded = '';
  for (const byte of Buffer.from(word, 'utf8')) {
    const char = String.fromCharCode(byte);
    if (/^[A-Za-z0-9_.]$/.test(char)) encoded += char;
    else if (char === '-') encoded += '--';
    else encoded += `-${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return encoded;
}

/** Whether a feature value says yes, as upstream reads one: set and not empty. */
export function featureEnabled(value: string | undefined): boolean {
  return value !== undefined && value !== '';
}
