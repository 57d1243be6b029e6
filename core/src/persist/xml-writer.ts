/**
 * The XML our state files are written in. Indentation goes only between
 * elements, never into an element's text, and everything a conforming parser
 * would normalise (CR and CRLF in text; tab, LF and CR in attribute values) is
 * written as a character reference, the way libxml2 (upstream's lxml) writes
 * it, so every parser reads back exactly the string that was stored.
 */
export interface XmlElement {
  readonly name: string;
  readonly attrs: Readonly<Record<string, string>>;
  /** Text content, or child elements; an element with neither is written empty. */
  readonly content: string | readonly XmlElement[];
}

export function xmlEl(
  name: string,
  attrs: Readonly<Record<string, string>>,
  content: string | readonly XmlElement[] = [],
): XmlElement {
  return { name, attrs, content };
}

const TEXT_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '\r': '&#13;' };
const ATTR_ESCAPES: Record<string, string> = {
  ...TEXT_ESCAPES,
  '"': '&quot;',
  '\t': '&#9;',
  '\n': '&#10;',
};

export function escapeText(s: string): string {
  return s.replace(/[&<>\r]/g, (c) => TEXT_ESCAPES[c] ?? c);
}

export function escapeAttr(s: string): string {
  return s.replace(/[&<>"\t\n\r]/g, (c) => ATTR_ESCAPES[c] ?? c);
}

function startTag(e: XmlElement): string {
  const attrs = Object.entries(e.attrs).map(([k, v]) => ` ${k}="${escapeAttr(v)}"`);
  return `<${e.name}${attrs.join('')}`;
}

/** An element's start and end lines, for children rendered apart (at `depth` + 1) to go between. */
export function renderAround(e: XmlElement, depth: number): readonly [string, string] {
  const pad = '  '.repeat(depth);
  return [`${pad}${startTag(e)}>\n`, `${pad}</${e.name}>\n`];
}

/** One element and its subtree, each line newline-terminated, starting at `depth` levels of two spaces. */
export function renderXml(e: XmlElement, depth = 0): string {
  const pad = '  '.repeat(depth);
  if (typeof e.content === 'string') {
    return `${pad}${startTag(e)}>${escapeText(e.content)}</${e.name}>\n`;
  }
  if (e.content.length === 0) return `${pad}${startTag(e)}/>\n`;
  const inner = e.content.map((c) => renderXml(c, depth + 1)).join('');
  return `${pad}${startTag(e)}>\n${inner}${pad}</${e.name}>\n`;
}
