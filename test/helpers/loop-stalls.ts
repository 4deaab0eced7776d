// Times when this process's event loop did not run: a timer that fires every
// TICK_MS notes every gap longer than it should be. On a busy machine (CI
// runs two test files at once beside whatever else the host does) a process
// can be descheduled for a few hundred milliseconds; a measurement over time
// windows uses this to tell such a window from one the code under test got
// wrong.
import type { TestContext } from 'node:test';

export interface Stall {
  from: number;
  to: number;
}

const TICK_MS = 20;

export class LoopStalls {
  readonly stalls: Stall[] = [];
  private timer: NodeJS.Timeout | undefined;

  /** A gap of more than `thresholdMs` past the tick counts as a stall. */
  constructor(private readonly thresholdMs = 100) {}

  start(): void {
    let last = performance.now();
    this.timer = setInterval(() => {
      const now = performance.now();
      if (now - last > TICK_MS + this.thresholdMs) this.stalls.push({ from: last, to: now });
      last = now;
    }, TICK_MS);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Whether a stall overlapped [from, to). */
  within(from: number, to: number): boolean {
    return this.stalls.some((stall) => stall.from < to && stall.to > from);
  }

  /** How long, of [from, to), the loop stood still. */
  stalledMs(from: number, to: number): number {
    return this.stalls.reduce((sum, stall) => sum + Math.max(0, Math.min(stall.to, to) - Math.max(stall.from, from)), 0);
  }

  describe(origin: number): string {
    return this.stalls.length === 0 ? 'none' : this.stalls.map((stall) => `${Math.round(stall.from - origin)}+${Math.round(stall.to - stall.from)} ms`).join(', ');
  }
}

/** Watches for stalls until the test ends. */
export function watchLoopStalls(t: TestContext, thresholdMs?: number): LoopStalls {
  const stalls = new LoopStalls(thresholdMs);
  stalls.start();
  t.after(() => stalls.stop());
  return stalls;
}
