import { Registry, collectDefaultMetrics } from 'prom-client';

/**
 * One registry per Nucleon instance (not prom-client's global one), so several
 * instances in one process (tests, embedding apps) do not collide.
 */
export function createMetricsRegistry(options: { defaultMetrics: boolean }): Registry {
  const registry = new Registry();
  if (options.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: 'nucleon_process_' });
  return registry;
}
