/**
 * Renders rows as `column -t` does, which is what upstream's tools pipe their tables through: every cell
 * but the last padded to its column's width, columns separated by two spaces. Hand-rolled rather than a
 * dependency because that is all the alignment the tools do (no wrapping, no borders).
 */
export function formatTable(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  }
  return rows
    .map((row) =>
      row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  '),
    )
    .map((line) => `${line}\n`)
    .join('');
}
