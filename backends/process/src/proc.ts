import { readFile } from 'node:fs/promises';

/** Linux reports /proc times in USER_HZ, which is 100 on every architecture Node runs on. */
const USER_HZ = 100;

export interface ProcSample {
  /** The kernel's one-letter state: R, S, D, T (stopped), Z (zombie), ... */
  readonly state: string;
  /** Time the process and its reaped children spent on a CPU, nanoseconds. */
  readonly cpuTimeNs: number;
  /** Resident set size, KiB. */
  readonly rssKb: number;
}

/** Reads /proc/<pid>/stat and status; undefined when the process is gone. */
export async function sampleProcess(pid: number): Promise<ProcSample | undefined> {
  try {
    const [stat, status] = await Promise.all([
      readFile(`/proc/${pid}/stat`, 'utf8'),
      readFile(`/proc/${pid}/status`, 'utf8'),
    ]);
    // The command name (field 2) may contain spaces and parentheses; the fields after its last ')' do not.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state); utime, stime, cutime, cstime are fields 14–17.
    const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i] ?? 0), 0);
    const rss = /^VmRSS:\s+(\d+) kB$/m.exec(status);
    return {
      state: fields[0] ?? '?',
      cpuTimeNs: (ticks * 1e9) / USER_HZ,
      rssKb: rss ? Number(rss[1]) : 0,
    };
  } catch {
    return undefined;
  }
}

/** The argument vector of a live process, to tell our agent from a process that reused its pid. */
export async function processArgv(pid: number): Promise<string[] | undefined> {
  try {
    const raw = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    return raw.split('\0').filter((arg) => arg !== '');
  } catch {
    return undefined;
  }
}
