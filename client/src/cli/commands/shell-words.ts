/** Characters a POSIX shell word may hold unquoted (Python's shlex.quote leaves these as they are). */
const SAFE_WORD = /^[\w@%+=:,./-]+$/;

/** One shell word: as it is when safe, else single-quoted with each embedded quote closed, escaped and reopened. */
export function shellWord(word: string): string {
  if (SAFE_WORD.test(word)) return word;
  return `'${word.replaceAll("'", `'"'"'`)}'`;
}

/** A program and its arguments as one shell command line (upstream qvm-run's join for qubes.VMShell). */
export function shellCommand(words: readonly string[]): string {
  return words.map(shellWord).join(' ');
}
