/**
 * A direct-boot kernel command line with the parameters a backend needs (its console, how a
 * panic ends the domain) appended, unless the spec's command line already sets them.
 */
export function withKernelDefaults(cmdline: string, defaults: Readonly<Record<string, string>>): string {
  const extra = Object.entries(defaults)
    .filter(([key]) => !new RegExp(`(^|\\s)${key}=`).test(cmdline))
    .map(([key, value]) => `${key}=${value}`);
  return [cmdline.trim(), ...extra].filter((s) => s.length > 0).join(' ');
}
