/**
 * Python's str() of the numbers upstream's backup texts print (the summary's
 * sizes, the progress event's percentage), so clients parsing them see the
 * same digits.
 */

/** str(float): shortest round-trip digits, always with a fraction, exponent below 1e-4. */
export function pyFloat(x: number): string {
  if (Number.isInteger(x)) return `${x}.0`;
  if (Math.abs(x) < 1e-4) {
    const [mant, exp] = x.toExponential().split('e') as [string, string];
    const sign = exp.startsWith('-') ? '-' : '+';
    return `${mant}e${sign}${exp.replace(/^[+-]/, '').padStart(2, '0')}`;
  }
  return String(x);
}

/** round(x, 1): correctly rounded like toFixed, but exact ties go to the even digit. */
function pyRound1(x: number): number {
  const tenths = x * 10;
  // A float whose tenths end in exactly .5 is a multiple of 1/4; then x*10 is exact too.
  if (Number.isInteger(x * 4) && tenths - Math.floor(tenths) === 0.5) {
    const down = Math.floor(tenths);
    return (down % 2 === 0 ? down : down + 1) / 10;
  }
  return Number(x.toFixed(1));
}

/** qubes.utils.size_to_human. */
export function sizeToHuman(size: number): string {
  if (size < 1024) return String(size);
  if (size < 1024 * 1024) return `${pyFloat(pyRound1(size / 1024))} KiB`;
  if (size < 1024 * 1024 * 1024) return `${pyFloat(pyRound1(size / (1024 * 1024)))} MiB`;
  return `${pyFloat(pyRound1(size / (1024 * 1024 * 1024)))} GiB`;
}
