import { AccessDenied, PolicySyntaxError, quote, type PolicyLocation } from './errors.js';
import type { DomainIndex } from './system-info.js';

/**
 * Where a VM token is written decides which tokens are legal there:
 * the SOURCE column, the TARGET column, a `target=`/`default_target=`
 * redirect, or the target a caller asks for.
 */
export type TokenContext = 'source' | 'target' | 'redirect' | 'intended';

export type TokenKind =
  | 'name'
  | 'wildcard'
  | 'adminvm'
  | 'anyvm'
  | 'default'
  | 'dispvm'
  | 'type'
  | 'tag'
  | 'dispvm-template'
  | 'dispvm-tag';

export interface VmToken {
  readonly kind: TokenKind;
  /** The token as written. */
  readonly text: string;
  /** For prefix tokens the part after the prefix, otherwise the text. */
  readonly value: string;
}

const EXACT: ReadonlyArray<readonly [string, TokenKind]> = [
  ['*', 'wildcard'],
  ['@adminvm', 'adminvm'],
  ['@anyvm', 'anyvm'],
  ['@default', 'default'],
  ['@dispvm', 'dispvm'],
];

// Order matters: `@dispvm:@tag:x` is first offered to `@dispvm:`, which declines values starting with '@'.
const PREFIXES: ReadonlyArray<readonly [string, TokenKind]> = [
  ['@type:', 'type'],
  ['@tag:', 'tag'],
  ['@dispvm:', 'dispvm-template'],
  ['@dispvm:@tag:', 'dispvm-tag'],
];

const ALLOWED: Readonly<Record<TokenKind, readonly TokenContext[]>> = {
  name: ['source', 'target', 'redirect', 'intended'],
  wildcard: ['source', 'target'],
  adminvm: ['source', 'target', 'redirect', 'intended'],
  anyvm: ['source', 'target'],
  default: ['target', 'intended'],
  dispvm: ['target', 'redirect', 'intended'],
  type: ['source', 'target'],
  tag: ['source', 'target'],
  'dispvm-template': ['source', 'target', 'redirect', 'intended'],
  'dispvm-tag': ['source', 'target'],
};

const CONTEXT_NAMES: Readonly<Record<TokenContext, string>> = {
  source: 'source',
  target: 'target',
  redirect: 'redirect',
  intended: 'intended target',
};

const UNKNOWN_LOCATION: PolicyLocation = { file: '<request>', line: null };

/** Parses one VM token for the given context; throws PolicySyntaxError when it is not legal there. */
export function parseToken(
  text: string,
  context: TokenContext,
  where: PolicyLocation = UNKNOWN_LOCATION,
): VmToken {
  const what = CONTEXT_NAMES[context];
  if (text.length === 0) throw new PolicySyntaxError(where, `invalid empty ${what} token`);
  if (!text.startsWith('@') && text !== '*') return { kind: 'name', text, value: text };
  for (const [exact, kind] of EXACT) {
    if (text === exact && ALLOWED[kind].includes(context)) return { kind, text, value: text };
  }
  for (const [prefix, kind] of PREFIXES) {
    if (!ALLOWED[kind].includes(context) || !text.startsWith(prefix)) continue;
    const value = text.slice(prefix.length);
    if (value.length === 0)
      throw new PolicySyntaxError(where, `invalid empty ${prefix} token: ${quote(text)}`);
    if (value.startsWith('@')) continue;
    return { kind, text, value };
  }
  throw new PolicySyntaxError(where, `invalid ${what} token: ${quote(text)}`);
}

/** The three spellings of dom0, which match each other and nothing else. */
export function isDom0(text: string): boolean {
  return text === '@adminvm' || text === 'dom0' || text === 'uuid:00000000-0000-0000-0000-000000000000';
}

/** Equality of two qube designations, where `uuid:X` equals the name of the qube with that uuid. */
export function sameQube(domains: DomainIndex, a: string, b: string): boolean {
  if (a.startsWith('uuid:')) {
    if (b.startsWith('uuid:')) return a === b;
    return domains.get(b)?.uuid === a.slice(5);
  }
  if (b.startsWith('uuid:')) return domains.get(a)?.uuid === b.slice(5);
  return a === b;
}

/** `@dispvm:<default_dispvm of source>`, or null when the source has none. */
export function defaultDispvmOf(domains: DomainIndex, source: string): string | null {
  const template = domains.get(source)?.default_dispvm;
  return template ? `@dispvm:${template}` : null;
}

export interface MatchContext {
  readonly domains: DomainIndex;
  /** The calling qube; needed to resolve a bare `@dispvm` request. */
  readonly source?: string;
}

/**
 * Whether a policy token (SOURCE or TARGET column) matches a concrete value:
 * the caller's qube name, or the normalised intended target.
 */
export function tokenMatches(token: VmToken, other: VmToken, ctx: MatchContext): boolean {
  const { domains } = ctx;
  switch (token.kind) {
    case 'wildcard':
      return true;
    case 'adminvm':
      return isDom0(other.text);
    case 'anyvm':
      return !isDom0(other.text);
    case 'default':
      return other.text === '@default';
    case 'dispvm':
      return other.text === '@dispvm';
    case 'type':
      return domains.get(other.text)?.type === token.value;
    case 'tag':
      return domains.get(other.text)?.tags.includes(token.value) ?? false;
    case 'name':
      if (isDom0(token.text)) return isDom0(other.text);
      return sameQube(domains, token.text, other.text);
    case 'dispvm-template': {
      if (other.kind === 'dispvm') {
        if (ctx.source === undefined) return false;
        // Upstream compares the whole `@dispvm:…` strings here, so no uuid/name equivalence.
        return defaultDispvmOf(domains, ctx.source) === token.text;
      }
      if (other.kind !== 'dispvm-template') return false;
      return sameQube(domains, token.value, other.value);
    }
    case 'dispvm-tag': {
      let template: string | null = null;
      if (other.kind === 'dispvm-template') template = other.value;
      else if (other.kind === 'dispvm' && ctx.source !== undefined) {
        template = defaultDispvmOf(domains, ctx.source)?.slice('@dispvm:'.length) ?? null;
      }
      if (template === null) return false;
      const domain = domains.get(template);
      return domain !== undefined && domain.template_for_dispvms && domain.tags.includes(token.value);
    }
  }
}

/** A plain qube name as a token, for matching the SOURCE column against the caller. */
export function nameToken(name: string): VmToken {
  return { kind: 'name', text: name, value: name };
}

/**
 * The concrete targets a TARGET/redirect token stands for, offered to the user
 * by `ask`: qube names, `@dispvm:NAME`, and the keywords `@dispvm`/`@adminvm`
 * that the caller resolves afterwards.
 */
export function expandToken(token: VmToken, domains: DomainIndex): string[] {
  const out: string[] = [];
  switch (token.kind) {
    case 'name': {
      const name = domains.has(token.text) ? domains.toName(token.text) : undefined;
      if (name !== undefined) out.push(name);
      break;
    }
    case 'wildcard':
    case 'anyvm':
      for (const name of domains.names) {
        const domain = domains.get(name);
        if (token.kind === 'wildcard' || !isDom0(name)) out.push(name);
        if (domain?.template_for_dispvms) out.push(`@dispvm:${name}`);
      }
      out.push('@dispvm');
      break;
    case 'adminvm':
    case 'dispvm':
      out.push(token.text);
      break;
    case 'default':
      break;
    case 'type':
    case 'tag':
      for (const name of domains.names) {
        const domain = domains.get(name);
        if (token.kind === 'type' ? domain?.type === token.value : domain?.tags.includes(token.value))
          out.push(name);
      }
      break;
    case 'dispvm-template': {
      const name = domains.get(token.value)?.template_for_dispvms ? domains.toName(token.text) : undefined;
      if (name !== undefined) out.push(name);
      break;
    }
    case 'dispvm-tag':
      for (const name of domains.names) {
        const domain = domains.get(name);
        if (domain?.template_for_dispvms && domain.tags.includes(token.value)) out.push(`@dispvm:${name}`);
      }
      break;
  }
  return out;
}

/**
 * Checks that an intended target names something callable. An unknown qube
 * name becomes `@default` (so callers cannot probe which qubes exist); an
 * `@dispvm:NAME` whose NAME is not a DispVM template is refused.
 */
export function verifyIntended(token: VmToken, domains: DomainIndex): VmToken {
  if (token.kind === 'name' && !domains.has(token.text))
    return { kind: 'default', text: '@default', value: '@default' };
  if (token.kind === 'dispvm-template' && !domains.get(token.value)?.template_for_dispvms) {
    throw new AccessDenied(`not a template for dispvm: ${token.value}`);
  }
  return token;
}
