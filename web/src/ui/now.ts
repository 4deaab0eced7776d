// One clock for every relative time on the page: a single timer per period,
// shared by all components that show "2 min ago", started by the first and
// stopped with the last.
import { useEffect, useState } from 'preact/hooks';

const clocks = new Map<number, { timer: ReturnType<typeof setInterval>; listeners: Set<(now: number) => void> }>();

export function useNow(periodMs = 5000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    let clock = clocks.get(periodMs);
    if (!clock) {
      const listeners = new Set<(now: number) => void>();
      const timer = setInterval(() => {
        const at = Date.now();
        for (const listener of listeners) listener(at);
      }, periodMs);
      clock = { timer, listeners };
      clocks.set(periodMs, clock);
    }
    clock.listeners.add(setNow);
    const owned = clock;
    return () => {
      owned.listeners.delete(setNow);
      if (owned.listeners.size === 0) {
        clearInterval(owned.timer);
        clocks.delete(periodMs);
      }
    };
  }, [periodMs]);
  return now;
}
