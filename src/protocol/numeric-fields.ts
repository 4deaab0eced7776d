// Which fields of a telemetry message are numbers to plot: one definition for
// the server's recent telemetry (src/admin/telemetry-rings.ts) and the
// console's live charts (web/src/telemetry-series.ts), which bundles this
// file. Pure: no imports but types.
import type { Telemetry } from '../events.js';

/** The numeric fields of a telemetry message: the Pyrinas ones and configured int/float fields. */
export function numericFields(telemetry: Telemetry): Array<[string, number]> {
  const fields: Array<[string, number]> = [];
  if (typeof telemetry.rsrp === 'number') fields.push(['rsrp', telemetry.rsrp]);
  if (typeof telemetry.rssi_hub === 'number') fields.push(['rssi_hub', telemetry.rssi_hub]);
  if (typeof telemetry.rssi_client === 'number') fields.push(['rssi_client', telemetry.rssi_client]);
  for (const [name, extra] of Object.entries(telemetry.extra ?? {})) {
    if ((extra.type === 'int' || extra.type === 'float') && Number.isFinite(extra.value)) fields.push([name, extra.value]);
  }
  return fields;
}
