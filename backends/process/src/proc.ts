import { readFile } from 'node:fs/promises';

/** Linux reports /proc times in USER_HZ, which is 100 on every architecture Node runs on. */
const USER_HZ = 100;

export interface ProcStat {
  /** The kernel's one-letter state: R, S, D, T (stopped), Z (zombie), ... */
  readonly state: string;
  /** Time the process and its reaped children spent on a CPU, nanoseconds. */
  readonly cpuTimeNs: number;
}

export interface ProcSample extends ProcStat {
  /**
   * Proportional set size, KiB: the resident pages, each shared one divided among the processes
   * that map it. What the host pays for this process: every domain's agent maps the same node
   * binary, which RSS would count in full once per domain.
   */
  readonly pssKb: number;
}

/**
 * Reads /proc/<pid>/stat alone; undefined when the process is gone. For a liveness or pause probe:
 * smaps_rollup walks every mapping of the process under its mmap lock.
 */
export async function processStat(pid: number): Promise<ProcStat | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses; the fields after its last ')' do not.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state); utime, stime, cutime, cstime are fields 14–17.
    const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i] ?? 0), 0);
    return { state: fields[0] ?? '?', cpuTimeNs: (ticks * 1e9) / USER_HZ };
  } catch {
    return undefined;
  }
}

/** Reads /proc/<pid>/stat and smaps_rollup; undefined when the process is gone. */
export async function sampleProcess(pid: number): Promise<ProcSample | undefined> {
  const [stat, rollup] = await Promise.all([
    processStat(pid),
    readFile(`/proc/${pid}/smaps_rollup`, 'utf8').catch(() => undefined),
  ]);
  if (!stat || rollup === undefined) return undefined;
  const pss = /^Pss:\s+(\d+) kB$/m.exec(rollup);
  return { ...stat, pssKb: pss ? Number(pss[1]) : 0 };
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
