import { mkdir, rename, writeFile, access } from 'node:fs/promises';
import path from 'node:path';
import type { MethodSpec } from '../api/method.js';

/** What the generator needs of a method declaration. */
export type PolicyMethod = Pick<MethodSpec, 'name' | 'scope' | 'access' | 'noPolicy'>;

export interface PolicyFile {
  /** Relative to the policy directory. */
  readonly path: string;
  readonly content: string;
}

export const ADMIN_POLICY_FILE = '90-admin-default.policy';
export const ADMIN_INCLUDES = [
  'include/admin-local-rwx',
  'include/admin-local-ro',
  'include/admin-global-rwx',
  'include/admin-global-ro',
] as const;

/** Services whose qrexec entry points are scripts, not entries of the method table. */
const HAND_WRITTEN: ReadonlyArray<readonly [service: string, include: string]> = [
  ['admin.vm.Console', 'include/admin-local-rwx'],
  ['admin.vm.volume.Import', 'include/admin-local-rwx'],
  ['admin.vm.volume.ImportWithSize', 'include/admin-local-rwx'],
];

const HEADER = `## Do not modify this file, create a new policy file with a lower number in the
## filename instead. For example \`30-admin-user.policy\`.

###
### Default Admin API qrexec policy
###

## WARNING: the services below let a qube control the system configuration.
## Grant them to trusted qubes only.

## Remember to add "target=dom0" to every allow/ask rule you write: the call
## names the managed qube as its target, and only dom0 serves admin.* calls.

## Every service includes one of:
##  - include/admin-local-rwx  (change the configuration of one qube)
##  - include/admin-local-ro   (read the configuration of one qube)
##  - include/admin-global-rwx (change global settings)
##  - include/admin-global-ro  (read global settings)

`;

function includeFileText(kind: 'local' | 'global', rwx: boolean): string {
  const what = kind === 'local' ? 'a single qube' : 'global settings';
  const lines = [
    `## Included by every ${rwx ? 'read-write' : 'read-only'} admin.* service acting on ${what},`,
    '## in the default configuration. To grant one service only, write a rule for',
    '## that service in a policy file of its own instead.',
    '',
    '## Rules here are in the per-service syntax: SOURCE TARGET ACTION [options].',
    '## The first matching rule decides.',
    '',
  ];
  if (!rwx) lines.push('## Whoever may write may also read:', `!include include/admin-${kind}-rwx`, '');
  lines.push('## Add your rules here, and append "target=dom0" to every allow/ask rule.', '');
  return lines.join('\n');
}

/** The include a method belongs to: scope, and rwx when it writes or executes. */
export function adminIncludeFor(method: PolicyMethod): string {
  return `include/admin-${method.scope}-${method.access === 'r' ? 'ro' : 'rwx'}`;
}

/**
 * The default Admin API policy for a method table: `90-admin-default.policy`
 * with one `!include-service` per method, and the four include files, which
 * grant nothing. Methods marked noPolicy are left out; a method the header
 * already lists is not repeated.
 */
export function generateAdminPolicy(methods: readonly PolicyMethod[]): PolicyFile[] {
  const listed = new Set(HAND_WRITTEN.map(([service]) => service));
  const lines = HAND_WRITTEN.map(([service, include]) => `!include-service ${service} * ${include}`);
  lines.push('');
  for (const method of methods) {
    if (method.noPolicy || listed.has(method.name)) continue;
    listed.add(method.name);
    lines.push(`!include-service ${method.name} * ${adminIncludeFor(method)}`);
  }
  return [
    { path: ADMIN_POLICY_FILE, content: HEADER + lines.join('\n') + '\n' },
    { path: 'include/admin-local-rwx', content: includeFileText('local', true) },
    { path: 'include/admin-local-ro', content: includeFileText('local', false) },
    { path: 'include/admin-global-rwx', content: includeFileText('global', true) },
    { path: 'include/admin-global-ro', content: includeFileText('global', false) },
  ];
}

export interface WriteAdminPolicyOptions {
  /**
   * Replace include files that already exist. Off by default: the includes
   * are where administrators write their grants.
   */
  readonly overwriteIncludes?: boolean;
}

/**
 * Writes the generated files into a policy directory, each by rename so a
 * watching daemon never reads half a file. Returns the paths written.
 */
export async function writeAdminPolicy(
  dir: string,
  methods: readonly PolicyMethod[],
  options: WriteAdminPolicyOptions = {},
): Promise<string[]> {
  const written: string[] = [];
  for (const file of generateAdminPolicy(methods)) {
    const target = path.join(dir, file.path);
    if (file.path !== ADMIN_POLICY_FILE && !options.overwriteIncludes && (await exists(target))) continue;
    await mkdir(path.dirname(target), { recursive: true });
    const tmp = path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.tmp`);
    await writeFile(tmp, file.content, { mode: 0o644 });
    await rename(tmp, target);
    written.push(target);
  }
  return written;
}

async function exists(p: string): Promise<boolean> {
  try {
    await access(p);
    return true;
  } catch {
    return false;
  }
}
