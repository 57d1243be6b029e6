/**
 * Text for an XML or HTML attribute or element: the five markup characters as
 * entities, and characters XML 1.0 cannot carry (a check's reason may quote
 * anything a daemon said) as a visible `\xNN`.
 */
export function escapeMarkup(text: string): string {
  return text
    .replace(
      /[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]/g,
      (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`,
    )
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}
