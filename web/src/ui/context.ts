// What every view gets from the shell: the one connection and the error banner.
import { createContext } from 'preact';
import { useContext, useEffect, useRef, useState } from 'preact/hooks';
import type { ConnectionState, ConsoleClient } from '../api/client.js';
import type { LiveEvent } from '../api/types.js';
import type { HealthHistory } from '../health-history.js';
import type { ErrorStore } from './errors.js';

export interface Console {
  client: ConsoleClient;
  errors: ErrorStore;
  /** The last hour of the 'health' stream, kept whichever view is shown. */
  health: HealthHistory;
}

export const ConsoleContext = createContext<Console | undefined>(undefined);

export function useConsole(): Console {
  const value = useContext(ConsoleContext);
  if (!value) throw new Error('useConsole outside the console shell');
  return value;
}

export function useConnection(): ConnectionState {
  const { client } = useConsole();
  const [state, setState] = useState(client.state);
  useEffect(() => client.onState(setState), [client]);
  return state;
}

/** Calls `load` now (when connected) and after every login or reconnect. */
export function useOnReady(load: () => void, deps: readonly unknown[]): void {
  const { client } = useConsole();
  const latest = useRef(load);
  latest.current = load;
  useEffect(() => {
    if (client.state.kind === 'connected') latest.current();
    return client.onReady(() => latest.current());
  }, [client, ...deps]);
}

/** Live events for as long as the view is shown; the latest handler is always the one called. */
export function useLiveEvents(handler: (event: LiveEvent) => void): void {
  const { client } = useConsole();
  const latest = useRef(handler);
  latest.current = handler;
  useEffect(() => client.onEvent((event) => latest.current(event)), [client]);
}
