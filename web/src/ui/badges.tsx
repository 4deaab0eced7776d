import type { DeviceRecord, OtaStatus } from '../api/types.js';

export function OnlineBadge({ online }: { online: boolean }) {
  return <span class={`badge ${online ? 'online' : 'offline'}`}>{online ? 'online' : 'offline'}</span>;
}

export function OtaBadge({ status }: { status: OtaStatus }) {
  return <span class={`badge ${status}`}>{status}</span>;
}

/** Telemetry as "rsrp=61 temperature=23.25": built-in fields, then the configured extra ones. */
export function describeTelemetry(telemetry: DeviceRecord['telemetry']): string {
  if (!telemetry) return '–';
  const { extra = {}, ...builtin } = telemetry;
  return [...Object.entries(builtin), ...Object.entries(extra).map(([name, field]) => [name, field.value] as const)].map(([name, value]) => `${name}=${String(value)}`).join(' ');
}
