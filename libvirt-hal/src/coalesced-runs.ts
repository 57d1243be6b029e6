interface Run {
  again: boolean;
  done: Promise<void>;
}

/**
 * Runs a job per key, one run at a time. A request while the key's job runs asks for one more run
 * after it, however many requests come, so a flood of requests (one per libvirt event) costs at
 * most two runs and one promise per key instead of a run each. The job handles its own errors.
 */
export class CoalescedRuns {
  private readonly runs = new Map<string, Run>();

  constructor(private readonly job: (key: string) => Promise<void>) {}

  /** Resolves once a run that started after this request has ended. */
  request(key: string): Promise<void> {
    const current = this.runs.get(key);
    if (current) {
      current.again = true;
      return current.done;
    }
    const run: Run = { again: false, done: Promise.resolve() };
    this.runs.set(key, run);
    run.done = this.loop(key, run);
    return run.done;
  }

  private async loop(key: string, run: Run): Promise<void> {
    try {
      do {
        run.again = false;
        await this.job(key);
      } while (run.again);
    } finally {
      this.runs.delete(key);
    }
  }
}
