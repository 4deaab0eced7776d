// docs/grafana: the fleet dashboard reads what the Influx runner writes (measurement,
// tag and field names as Pyrinas) from an InfluxDB datasource with Flux.
// The Flux itself needs a real InfluxDB 2 to run, which this suite does not have.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { DEVICE_TAG, TELEMETRY_MEASUREMENT, telemetryToLine } from '../../src/influx/index.js';
import type { Telemetry } from '../../src/events.js';
import { repoRoot } from '../helpers/index.js';

interface Panel {
  title: string;
  datasource?: { type: string; uid: string };
  targets?: { query: string; datasource?: { type: string; uid: string } }[];
}

/** The field names the Influx runner writes for a telemetry message with every field set (src/influx/points.ts). */
function writtenFields(): Set<string> {
  // The four Pyrinas fields; configured extra fields (`[[telemetry.fields]]`) differ per deployment.
  const every: Required<Omit<Telemetry, 'extra'>> = { version: '1.0.0', rsrp: 1, rssi_hub: 2, rssi_client: 3 };
  const line = telemetryToLine('device-1', every, 0, 'ms');
  const fields = line.split(' ')[1] ?? '';
  return new Set(fields.split(',').map((field) => field.split('=')[0] ?? ''));
}

test('the fleet dashboard queries an InfluxDB (Flux) datasource for the measurement, tag and fields Nucleon writes', async () => {
  const dir = path.join(repoRoot, 'docs/grafana');
  const dashboard = JSON.parse(await readFile(path.join(dir, 'nucleon-fleet.json'), 'utf8')) as { uid: string; panels: Panel[]; templating: { list: { name: string; query: string }[] } };
  const provisioning = parseYaml(await readFile(path.join(dir, 'datasource.yaml'), 'utf8')) as { datasources: { type: string; jsonData: { version?: string } }[] };
  const influx = provisioning.datasources.filter((ds) => ds.type === 'influxdb');
  assert.equal(influx.length, 1);
  assert.equal(influx[0]?.jsonData.version, 'Flux');
  assert.equal(dashboard.uid, 'nucleon-fleet');

  const fields = writtenFields();
  assert.deepEqual([...fields].sort(), ['rsrp', 'rssi_client', 'rssi_hub', 'version']);
  const titles = dashboard.panels.map((panel) => panel.title);
  for (const wanted of ['Devices reporting', 'RSRP per device', 'Firmware versions']) assert.ok(titles.includes(wanted), `panel ${wanted}`);
  const used = new Set<string>();
  for (const panel of dashboard.panels) {
    assert.equal(panel.datasource?.type, 'influxdb', `${panel.title}: datasource`);
    assert.ok(panel.targets && panel.targets.length > 0, `${panel.title}: has a query`);
    for (const target of panel.targets) {
      assert.deepEqual(target.datasource, panel.datasource);
      assert.ok(target.query.includes(`r._measurement == "${TELEMETRY_MEASUREMENT}"`), `${panel.title}: measurement`);
      for (const [, field] of target.query.matchAll(/r\._field == "(\w+)"/g)) {
        assert.ok(fields.has(field ?? ''), `${panel.title}: field ${field} must be one points.ts writes`);
        used.add(field ?? '');
      }
      for (const [, tag] of target.query.matchAll(/\br\.(\w+)\b/g)) assert.ok(tag?.startsWith('_') || tag === DEVICE_TAG, `${panel.title}: column ${tag}`);
    }
  }
  assert.deepEqual([...used].sort(), [...fields].sort(), 'every field written has a panel');
  const deviceVariable = dashboard.templating.list.find((variable) => variable.name === 'device');
  assert.ok(deviceVariable?.query.includes(`tag: "${DEVICE_TAG}"`));
});
