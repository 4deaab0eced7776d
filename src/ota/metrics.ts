import { Counter, type Registry } from 'prom-client';

/** The OTA counters, registered once per registry (a runner restarted in the same instance reuses them). */
export interface OtaMetrics {
  requests: Counter<'cmd'>;
  rejected: Counter<'reason'>;
  bytesServed: Counter<'path'>;
  commands: Counter<'command' | 'result'>;
  httpRequests: Counter<'method' | 'status'>;
  budget: Counter<'path' | 'result'>;
}

function counter<L extends string>(registry: Registry, name: string, help: string, labelNames: L[]): Counter<L> {
  const existing = registry.getSingleMetric(name);
  if (existing instanceof Counter) return existing;
  return new Counter({ name, help, labelNames, registers: [registry] });
}

export function otaMetrics(registry: Registry): OtaMetrics {
  return {
    requests: counter(registry, 'nucleon_ota_requests_total', 'OTA requests from devices over MQTT, per command', ['cmd']),
    rejected: counter(registry, 'nucleon_ota_rejected_requests_total', 'OTA download requests refused, per reason (no reply is sent)', ['reason']),
    bytesServed: counter(registry, 'nucleon_ota_bytes_served_total', 'Firmware bytes served, per path (mqtt, http)', ['path']),
    commands: counter(registry, 'nucleon_ota_commands_total', 'OTA management requests, per command and result code', ['command', 'result']),
    httpRequests: counter(registry, 'nucleon_ota_http_requests_total', 'OTA HTTP requests, per method and status', ['method', 'status']),
    budget: counter(registry, 'nucleon_ota_budget_requests_total', "Download requests of campaign devices held to the campaign's byte budget, per path and result (delayed, over)", ['path', 'result']),
  };
}
