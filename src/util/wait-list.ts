interface Waiter {
  resolve: () => void;
  reject: (error: Error) => void;
}

/**
 * Callers parked until their owner says something may have changed ("there
 * may be room now", "idle"): `wait()` parks one; `wakeAll()` resolves every
 * parked one, and each checks its condition again (waiting again if another
 * caller was quicker); `failAll()` rejects them all (the owner stopped).
 *
 * Bounded by the callers, not by what they carry: each holds one place for
 * one wait. A caller that goes away (its `signal` aborts) leaves the list at
 * once, so an owner that never wakes anyone cannot collect them.
 */
export class WaitList {
  private waiters = new Set<Waiter>();

  get size(): number {
    return this.waiters.size;
  }

  /** Resolves on the next `wakeAll`; rejects on `failAll`, or with the signal's reason when it aborts. */
  wait(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    return new Promise<void>((resolve, reject) => {
      if (!signal) {
        this.waiters.add({ resolve, reject });
        return;
      }
      const onAbort = () => {
        this.waiters.delete(waiter);
        reject(abortReason(signal));
      };
      const waiter: Waiter = {
        resolve: () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (error) => {
          signal.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.add(waiter);
    });
  }

  wakeAll(): void {
    if (this.waiters.size === 0) return;
    // Swapped first: a woken caller that waits again joins the next round, not this one.
    const waiters = this.waiters;
    this.waiters = new Set();
    for (const waiter of waiters) waiter.resolve();
  }

  /**
   * Resolves true once `condition()` holds, checked now and after each
   * `wakeAll`; false when `timeoutMs` passes first (a bounded drain at stop).
   */
  async until(condition: () => boolean, timeoutMs: number): Promise<boolean> {
    if (condition()) return true;
    // A timer of our own, not AbortSignal.timeout: that one is unref'd, and a stop's drain must keep the process up.
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), timeoutMs);
    try {
      while (!condition()) await this.wait(deadline.signal);
      return true;
    } catch (error) {
      if (deadline.signal.aborted) return condition();
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Rejects every parked caller, each with its own error from `error()`. */
  failAll(error: () => Error): void {
    const waiters = this.waiters;
    this.waiters = new Set();
    for (const waiter of waiters) waiter.reject(error());
  }
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('wait aborted');
}
