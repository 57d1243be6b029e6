import { execFile, spawn } from 'node:child_process';

/** Runs a system tool (ip, nft, the DHCP client); rejects with its stderr when it fails. */
export function run(file: string, args: readonly string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(' ')}: ${stderr.trim() || error.message}`));
      else resolve(stdout);
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

/**
 * Lines a long-running tool prints (ip monitor), until it exits. `started` resolves once the
 * tool runs (its exec succeeded), `stop` ends it.
 */
export function follow(
  file: string,
  args: readonly string[],
  onLine: (line: string) => void,
): { stop: () => void; started: Promise<void> } {
  const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const started = new Promise<void>((resolve) => {
    child.once('spawn', resolve);
    child.once('error', () => resolve());
  });
  let rest = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    const lines = (rest + chunk).split('\n');
    rest = lines.pop() ?? '';
    for (const line of lines) onLine(line);
  });
  return { stop: () => void child.kill(), started };
}
