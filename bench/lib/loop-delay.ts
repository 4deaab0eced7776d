import { monitorEventLoopDelay, PerformanceObserver, type IntervalHistogram } from 'node:perf_hooks';

/**
 * Event-loop delay of a Node broker process (perf_hooks histogram, 5 ms
 * resolution) and its GC pauses: shows whether latency tails come from the
 * loop being blocked, and how much of that is the collector.
 */
export interface LoopDelay {
  p99Ms: number;
  maxMs: number;
  /** GC pauses since the last reset: count, total and longest (ms), per kind (minor = scavenge, major = mark-sweep). */
  gc: { minor: GcPauses; major: GcPauses; other: GcPauses };
}

interface GcPauses {
  count: number;
  totalMs: number;
  maxMs: number;
}

// perf_hooks GC kinds: 1 minor (scavenge), 2 major (mark-sweep-compact), 4 incremental, 8 weak callbacks.
const MINOR = 1;
const MAJOR = 2;

const emptyPauses = (): GcPauses => ({ count: 0, totalMs: 0, maxMs: 0 });

export class LoopDelayMonitor {
  private readonly histogram: IntervalHistogram = monitorEventLoopDelay({ resolution: 5 });
  private gc = { minor: emptyPauses(), major: emptyPauses(), other: emptyPauses() };

  constructor() {
    this.histogram.enable();
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        const kind = ((entry as { detail?: unknown }).detail as { kind?: number } | undefined)?.kind;
        const pauses = kind === MINOR ? this.gc.minor : kind === MAJOR ? this.gc.major : this.gc.other;
        pauses.count++;
        pauses.totalMs += entry.duration;
        if (entry.duration > pauses.maxMs) pauses.maxMs = entry.duration;
      }
    }).observe({ entryTypes: ['gc'] });
  }

  reset(): void {
    this.histogram.reset();
    this.gc = { minor: emptyPauses(), major: emptyPauses(), other: emptyPauses() };
  }

  read(): LoopDelay {
    return { p99Ms: this.histogram.percentile(99) / 1e6, maxMs: this.histogram.max / 1e6, gc: structuredClone(this.gc) };
  }
}
