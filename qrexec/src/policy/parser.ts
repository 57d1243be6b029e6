import { AccessDenied, PolicySyntaxError, type PolicyLocation } from './errors.js';
import { LoadBudget, readError } from './budget.js';
import type { DirEntry, PolicyFiles } from './files.js';
import {
  parseRuleLine,
  parseServiceRuleLine,
  splitFields,
  validateServiceAndArgument,
  type Rule,
} from './rule.js';

const POLICY_FILE_NAME = /^[0-9a-z_.-]+$/;
const LEGACY_FILE_NAME = /^[A-Za-z0-9+._-]+$/;
const LEGACY_IGNORED_SUFFIXES = ['.rpmsave', '.rpmnew', '.swp'];

/** Python text files split lines on \n, \r\n and \r alike. */
function lines(text: string): string[] {
  return text.split(/\r\n|\r|\n/);
}

/**
 * The `*.policy` files of a directory listing, sorted by name. One badly named
 * candidate refuses the whole directory: silently skipping it could drop a deny rule.
 */
export function selectPolicyFiles(entries: readonly DirEntry[], dir: string, files: PolicyFiles): string[] {
  const names = entries
    .filter((e) => e.isFile && e.name.endsWith('.policy') && !e.name.startsWith('.'))
    .map((e) => e.name);
  for (const name of names) {
    if (!POLICY_FILE_NAME.test(name)) throw new AccessDenied(`invalid filename: ${files.resolve(dir, name)}`);
  }
  return names.sort().map((name) => files.resolve(dir, name));
}

/** `SERVICE+ARG` → [SERVICE, +ARG]; without `+` the argument is `noArg`. */
export function splitServiceName(name: string, noArg = '+'): [service: string, argument: string] {
  const plus = name.indexOf('+');
  return plus < 0 ? [name, noArg] : [name.slice(0, plus), name.slice(plus)];
}

function legacySuffix(name: string): string {
  const dot = name.lastIndexOf('.');
  return dot <= 0 ? '' : name.slice(dot);
}

/**
 * The files `!compat-4.0` pulls in, in load order: services sorted by name, and
 * within a service the `+arg` files (sorted) before the argument-less file.
 */
export function legacyCompatFiles(
  entries: readonly DirEntry[],
): Array<{ service: string; argument: string; name: string }> {
  const services = new Map<string, Map<string, string>>();
  for (const e of entries) {
    if (!e.isFile || e.name.startsWith('.') || !LEGACY_FILE_NAME.test(e.name)) continue;
    if (LEGACY_IGNORED_SUFFIXES.includes(legacySuffix(e.name))) continue;
    const [service, argument] = splitServiceName(e.name, '*');
    let args = services.get(service);
    if (!args) services.set(service, (args = new Map()));
    args.set(argument, e.name);
  }
  const byArgument = (a: string, b: string): number => {
    if (a === b) return 0;
    if (a === '*') return 1;
    if (b === '*') return -1;
    return a < b ? -1 : 1;
  };
  const out: Array<{ service: string; argument: string; name: string }> = [];
  for (const service of [...services.keys()].sort()) {
    const args = services.get(service) ?? new Map<string, string>();
    for (const argument of [...args.keys()].sort(byArgument)) {
      out.push({ service, argument, name: args.get(argument) ?? '' });
    }
  }
  return out;
}

export interface ParserOptions {
  readonly files: PolicyFiles;
  /** The R4.0 per-service directory that `!compat-4.0` reads. */
  readonly legacyDir: string;
}

/**
 * Accumulates rules from policy files and their directives. It records every
 * file and directory it looked at, so a watcher knows what a reload depends on.
 */
export class PolicyParser {
  readonly rules: Rule[] = [];
  readonly filesSeen = new Set<string>();
  readonly dirsSeen = new Set<string>();
  private readonly budget: LoadBudget;

  constructor(private readonly opts: ParserOptions) {
    this.budget = new LoadBudget(opts.files);
  }

  /** The merged runtime + system directories: first directory wins per basename, then sorted by basename. */
  loadDirs(dirs: readonly string[]): void {
    const { files } = this.opts;
    const chosen = new Map<string, string>();
    for (const dir of dirs) {
      const entries = this.list(dir);
      if (entries === undefined) continue;
      for (const file of selectPolicyFiles(entries, dir, files)) {
        const base = files.basename(file);
        if (!chosen.has(base)) chosen.set(base, file);
      }
    }
    for (const base of [...chosen.keys()].sort()) {
      const file = chosen.get(base) ?? '';
      this.loadFile(file, files.dirname(file), null);
    }
  }

  /**
   * Parses one file in the current syntax. `base` is the directory that
   * include paths are relative to: that of the top-level file, also for
   * nested includes.
   */
  loadFile(file: string, base: string, from: PolicyLocation | null): void {
    this.filesSeen.add(file);
    this.budget.withFile(file, from, (text) => this.parseText(text, file, base));
  }

  parseText(text: string, file: string, base: string): void {
    lines(text).forEach((raw, i) => {
      const where = { file, line: i + 1 };
      const line = raw.trim();
      if (line.length === 0 || line.startsWith('#')) return;
      if (line.startsWith('!')) {
        this.directive(splitFields(line), base, where);
        return;
      }
      this.rules.push(parseRuleLine(line, where));
    });
  }

  /** Parses an old-syntax file bound to one service/argument (`!include-service`, `!compat-4.0`). */
  parseServiceText(service: string, argument: string, text: string, file: string, base: string): void {
    lines(text).forEach((raw, i) => {
      const where = { file, line: i + 1 };
      let line = raw.trim();
      if (line.length === 0 || line.startsWith('#')) return;
      line = line.replaceAll('$include:', '!include ').replaceAll('$', '@').replaceAll(',', ' ');
      if (line.startsWith('!')) {
        const [directive, ...params] = splitFields(line);
        if (directive !== '!include') throw new PolicySyntaxError(where, 'invalid directive');
        const [path] = oneParam(params, where);
        this.includeService(service, argument, path, base, where);
        return;
      }
      this.rules.push(parseServiceRuleLine(service, argument, line, where));
    });
  }

  private directive([directive, ...params]: string[], base: string, where: PolicyLocation): void {
    switch (directive) {
      case '!include': {
        const [path] = oneParam(params, where);
        this.loadFile(this.opts.files.resolve(base, path), base, where);
        return;
      }
      case '!include-dir': {
        const [path] = oneParam(params, where);
        const dir = this.opts.files.resolve(base, path);
        const entries = this.list(dir);
        if (entries === undefined) throw new PolicySyntaxError(where, `not a directory: ${dir}`);
        for (const file of selectPolicyFiles(entries, dir, this.opts.files)) this.loadFile(file, base, where);
        return;
      }
      case '!include-service': {
        if (params.length !== 3) throw new PolicySyntaxError(where, 'invalid number of params');
        const [service = '', argument = '', path = ''] = params;
        this.includeService(service, argument, path, base, where);
        return;
      }
      case '!compat-4.0':
        if (params.length !== 0) throw new PolicySyntaxError(where, 'invalid number of params');
        this.compat40(where);
        return;
      default:
        throw new PolicySyntaxError(where, 'invalid directive');
    }
  }

  private includeService(
    service: string,
    argument: string,
    path: string,
    base: string,
    where: PolicyLocation,
  ): void {
    const checked = validateServiceAndArgument(service, argument, where);
    const file = this.opts.files.resolve(base, path);
    this.filesSeen.add(file);
    this.budget.withFile(file, where, (text) =>
      this.parseServiceText(checked.service ?? '*', checked.argument ?? '*', text, file, base),
    );
  }

  /**
   * Inlines the R4.0 per-service files. After each `+arg` file, the deny that
   * R4.0 implied (a specific file replaced the generic one) is made explicit;
   * argument-less files get none, so later `.policy` rules still apply.
   */
  private compat40(where: PolicyLocation): void {
    const { files, legacyDir } = this.opts;
    const entries = this.list(legacyDir) ?? [];
    for (const { service, argument, name } of legacyCompatFiles(entries)) {
      const file = files.resolve(legacyDir, name);
      this.includeService(service, argument, file, legacyDir, where);
      if (argument === '*') continue;
      const implicit = { file, line: null };
      this.rules.push(parseServiceRuleLine(service, argument, '@anyvm @anyvm deny', implicit));
      this.rules.push(parseServiceRuleLine(service, argument, '@anyvm @adminvm deny', implicit));
    }
  }

  private list(dir: string): DirEntry[] | undefined {
    this.dirsSeen.add(dir);
    try {
      return this.opts.files.listDir(dir);
    } catch (err) {
      throw readError({ file: dir, line: null }, dir, err);
    }
  }
}

function oneParam(params: string[], where: PolicyLocation): [string] {
  const [only] = params;
  if (params.length !== 1 || only === undefined)
    throw new PolicySyntaxError(where, 'invalid number of params');
  return [only];
}
