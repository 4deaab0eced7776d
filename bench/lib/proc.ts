import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/**
 * CPU and memory of other processes, read from /proc so the figures do not
 * depend on the process cooperating (Mosquitto cannot report its own CPU).
 */

let clockTicks: number | undefined;

/** Clock ticks per second (`getconf CLK_TCK`), the unit of utime/stime in /proc/<pid>/stat. */
export function clockTicksPerSecond(): number {
  if (clockTicks === undefined) {
    const text = execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim();
    const value = Number.parseInt(text, 10);
    if (!Number.isInteger(value) || value <= 0) throw new Error(`getconf CLK_TCK printed ${JSON.stringify(text)}`);
    clockTicks = value;
  }
  return clockTicks;
}

/** User + system CPU seconds a process (all its threads) has used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) is in parentheses and may contain spaces; count fields after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state), so utime (field 14) is rest[11] and stime (field 15) rest[12].
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error(`cannot parse /proc/${pid}/stat`);
  return (utime + stime) / clockTicksPerSecond();
}

export interface MemoryUsage {
  /** Resident set size now, bytes. */
  rss: number;
  /** Peak resident set size (VmHWM), bytes. */
  peakRss: number;
}

export function memoryUsage(pid: number): MemoryUsage {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return { rss: statusKb(status, 'VmRSS') * 1024, peakRss: statusKb(status, 'VmHWM') * 1024 };
}

function statusKb(status: string, field: string): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  if (!match?.[1]) throw new Error(`no ${field} in /proc/<pid>/status`);
  return Number(match[1]);
}

/** CPU seconds summed over several processes (the load generator's workers). */
export function totalCpuSeconds(pids: readonly number[]): number {
  let total = 0;
  for (const pid of pids) total += cpuSeconds(pid);
  return total;
}

/** A CPU reading at one moment, to subtract from a later one. */
export class CpuMeter {
  private readonly start: number;

  constructor(private readonly pids: readonly number[]) {
    this.start = totalCpuSeconds(pids);
  }

  /** CPU seconds used since the meter was made. */
  elapsed(): number {
    return totalCpuSeconds(this.pids) - this.start;
  }
}

/** What a CpuShares meter read over its interval. */
export interface CpuReading {
  seconds: number;
  /** CPU seconds per labelled group over `seconds`. */
  groups: { label: string; cpuS: number }[];
  cores: number;
  /** The whole machine, in cores (busy: not idle or waiting for I/O; steal: given to other guests). */
  machineBusyCores: number;
  machineStealCores: number;
}

/**
 * CPU of several labelled processes (or groups of them) and of the whole
 * machine over one interval: who got the machine's cores while a scenario
 * ran.
 */
export class CpuShares {
  private readonly start: number[];
  private readonly machineStart = machineTicks();
  private readonly startedAt = performance.now();

  constructor(private readonly groups: readonly { label: string; pids: readonly number[] }[]) {
    this.start = groups.map((group) => totalCpuSeconds(group.pids));
  }

  /** Since the meter was made. */
  read(): CpuReading {
    const seconds = (performance.now() - this.startedAt) / 1000;
    const groups = this.groups.map((group, i) => ({ label: group.label, cpuS: totalCpuSeconds(group.pids) - (this.start[i] ?? 0) }));
    const end = machineTicks();
    const total = end.total - this.machineStart.total;
    const cores = (ticks: number) => (total > 0 ? (ticks / total) * end.cores : Number.NaN);
    return { seconds, groups, cores: end.cores, machineBusyCores: cores(end.busy - this.machineStart.busy), machineStealCores: cores(end.steal - this.machineStart.steal) };
  }
}

/**
 * "worker 1 81 %, load generator 45 %; these 126 %; the machine busy 190 %
 * of 200 %, steal 4 %" (the machine's figure has everything else too: the
 * kernel's network work, other processes).
 */
export function describeCpu(reading: CpuReading): string {
  const percent = (cores: number) => `${(cores * 100).toFixed(0)} %`;
  const parts = reading.groups.map((group) => `${group.label} ${percent(group.cpuS / reading.seconds)}`);
  const all = reading.groups.reduce((sum, group) => sum + group.cpuS, 0) / reading.seconds;
  return `${parts.join(', ')}; these ${percent(all)}; the machine busy ${percent(reading.machineBusyCores)} of ${reading.cores * 100} %, steal ${percent(reading.machineStealCores)}`;
}

/** Ticks of all cores from the first line of /proc/stat: everything, busy (not idle or waiting for I/O), stolen by the hypervisor. */
function machineTicks(): { total: number; busy: number; steal: number; cores: number } {
  const text = readFileSync('/proc/stat', 'utf8');
  const fields = (text.split('\n')[0] ?? '').trim().split(/\s+/).slice(1, 9).map(Number);
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = fields;
  const cores = text.split('\n').filter((line) => /^cpu\d+ /.test(line)).length;
  return { total: user + nice + system + idle + iowait + irq + softirq + steal, busy: user + nice + system + irq + softirq, steal, cores };
}

/**
 * Samples a process's RSS on a timer (bounded: one number kept, the maximum),
 * for scenarios that must show memory stays bounded under load.
 */
export class RssWatcher {
  private timer: NodeJS.Timeout | undefined;
  max = 0;
  samples = 0;
  /** Why sampling stopped early (the process went away), if it did. */
  failure: string | undefined;

  constructor(
    private readonly pid: number,
    private readonly intervalMs = 250,
  ) {}

  start(): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
  }

  stop(): number {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.sample();
    return this.max;
  }

  private sample(): void {
    try {
      this.max = Math.max(this.max, memoryUsage(this.pid).rss);
      this.samples++;
    } catch (error) {
      // The process is gone; the scenario also notices that through its exit event.
      this.failure ??= error instanceof Error ? error.message : String(error);
      if (this.timer) clearInterval(this.timer);
      this.timer = undefined;
    }
  }
}

/** Write-class system calls (write, writev, ...) a process has made so far (`syscw` of /proc/<pid>/io, all threads). */
export function writeSyscalls(pid: number): number {
  const match = /^syscw:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'));
  if (!match?.[1]) throw new Error(`no syscw in /proc/${pid}/io`);
  return Number(match[1]);
}
