import type { Aedes } from 'aedes';

type Handle = Aedes['handle'];

/** The adjustments a broker's `handle` already makes (so none is installed twice, whatever the order). */
const installed = new WeakMap<Handle, Set<symbol>>();

/**
 * Wraps this broker's `handle` (once per `mark`) so that every client it
 * makes passes through `adjust` right after aedes' constructor returns,
 * before any event of its stream can run.
 */
export function adjustNewClients(aedes: Aedes, mark: symbol, adjust: (client: object) => void): void {
  const handle = aedes.handle;
  const marks = installed.get(handle) ?? new Set<symbol>();
  if (marks.has(mark)) return;
  const adjusted: Handle = (stream, request) => {
    const made = handle(stream, request);
    adjust(made);
    return made;
  };
  installed.set(adjusted, new Set([...marks, mark]));
  aedes.handle = adjusted;
}
