/** CPU usage from consecutive cpu-time samples of each running domain. */
export class CpuSampler {
  /** Keyed by uuid and libvirt id, so a restarted domain starts a fresh series. */
  private readonly last = new Map<string, { cpuTimeNs: bigint; atNs: bigint }>();

  /** Percent of the domain's vcpus busy since the previous sample (0 for the first one). */
  sample(key: string, cpuTimeNs: bigint, vcpus: number, nowNs = process.hrtime.bigint()): number {
    const prev = this.last.get(key);
    this.last.set(key, { cpuTimeNs, atNs: nowNs });
    if (!prev || nowNs <= prev.atNs || vcpus <= 0) return 0;
    const busy = Number(cpuTimeNs - prev.cpuTimeNs) / Number(nowNs - prev.atNs);
    return Math.max(0, Math.min(100, (busy / vcpus) * 100));
  }

  /** Forgets domains not in `live`, so the map does not grow with every start. */
  retain(live: ReadonlySet<string>): void {
    for (const key of this.last.keys()) if (!live.has(key)) this.last.delete(key);
  }
}
