/**
 * Policy refusals. Every refusal carries `notify` because qrexec tells the
 * user about denied calls unless the rule said `notify=no`.
 */
export class AccessDenied extends Error {
  readonly notify: boolean;

  constructor(message: string, notify = true) {
    super(message);
    this.name = new.target.name;
    this.notify = notify;
  }
}

/** Where a rule or an error comes from; `line` is null for rules the loader synthesises. */
export interface PolicyLocation {
  readonly file: string;
  readonly line: number | null;
}

export function formatLocation(where: PolicyLocation): string {
  return `${where.file}:${where.line ?? '-'}`;
}

/**
 * A malformed policy. It is an AccessDenied because a policy that does not
 * parse must refuse every call, not fall back to something more permissive.
 */
export class PolicySyntaxError extends AccessDenied {
  readonly file: string;
  readonly line: number | null;
  readonly detail: string;

  constructor(where: PolicyLocation, detail: string) {
    super(`${formatLocation(where)}: ${detail}`);
    this.file = where.file;
    this.line = where.line;
    this.detail = detail;
  }
}

/** The request itself is unacceptable (e.g. a relay impersonating a qube it does not relay for). */
export class RequestError extends AccessDenied {}

/** The legacy (R4.0) engine found neither `<service>+<arg>` nor `<service>`. */
export class PolicyNotFound extends AccessDenied {
  constructor(service: string) {
    super(`Policy not found for service ${service}`);
  }
}

/** Python's repr() of a short ASCII string, which upstream messages embed. */
export function quote(s: string): string {
  return s.includes("'") && !s.includes('"')
    ? `"${s}"`
    : `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}
