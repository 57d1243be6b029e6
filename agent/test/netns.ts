import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** Runs a command to its end; whether it succeeded and what it printed (stdout, then stderr). */
export function sh(args: string[]): { ok: boolean; out: string } {
  const run = spawnSync(args[0] ?? '', args.slice(1), { encoding: 'utf8' });
  return { ok: run.status === 0, out: `${run.stdout}${run.stderr}` };
}

/** Why the network daemon cannot be run in network namespaces here, if it cannot. */
export function netnsUnavailable(daemon: string): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces)';
  if (!sh(['nft', '--version']).ok) return 'needs nft (nftables)';
  if (!sh(['ip', 'netns', 'list']).ok) return 'needs ip netns (iproute2)';
  if (!existsSync(daemon)) return `needs the built daemon ${daemon} (npx tsc -b)`;
  return undefined;
}
