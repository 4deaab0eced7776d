// docs/grafana: the dashboard reads what the Influx runner writes (measurement,
// tag and field names as Pyrinas) from the datasource the provisioning file declares.
// The Flux itself needs a real InfluxDB 2 to run, which this suite does not have.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { DEVICE_TAG, TELEMETRY_MEASUREMENT } from '../../src/influx/index.js';
import { repoRoot } from '../helpers/index.js';

interface Panel {
  title: string;
  datasource?: { type: string; uid: string };
  targets?: { query: string; datasource?: { uid: string } }[];
  gridPos: { x: number; y: number; w: number; h: number };
}

test('the fleet dashboard queries the provisioned datasource for the measurement, tag and fields Nucleon writes', async () => {
  const dir = path.join(repoRoot, 'docs/grafana');
  const dashboard = JSON.parse(await readFile(path.join(dir, 'nucleon-fleet.json'), 'utf8')) as { uid: string; panels: Panel[]; templating: { list: { name: string; query: string }[] } };
  const provisioning = await readFile(path.join(dir, 'datasource.yaml'), 'utf8');
  const uid = /^\s*uid:\s*([\w-]+)/m.exec(provisioning)?.[1];
  assert.equal(uid, 'nucleon-influxdb');
  assert.match(provisioning, /^\s*type:\s*influxdb\b/m);
  assert.match(provisioning, /^\s*version:\s*Flux\b/m);
  assert.equal(dashboard.uid, 'nucleon-fleet');

  const titles = dashboard.panels.map((panel) => panel.title);
  for (const wanted of ['Devices reporting', 'RSRP per device', 'Firmware versions']) assert.ok(titles.includes(wanted), `panel ${wanted}`);
  const pyrinasFields = new Set(['version', 'rsrp', 'rssi_hub', 'rssi_client']);
  for (const panel of dashboard.panels) {
    assert.equal(panel.datasource?.uid, uid, `${panel.title}: datasource`);
    assert.ok(panel.targets && panel.targets.length > 0, `${panel.title}: has a query`);
    for (const target of panel.targets) {
      assert.equal(target.datasource?.uid, uid);
      assert.ok(target.query.includes(`r._measurement == "${TELEMETRY_MEASUREMENT}"`), `${panel.title}: measurement`);
      for (const [, field] of target.query.matchAll(/r\._field == "(\w+)"/g)) assert.ok(pyrinasFields.has(field ?? ''), `${panel.title}: field ${field}`);
      for (const [, tag] of target.query.matchAll(/\br\.(\w+)\b/g)) assert.ok(tag?.startsWith('_') || tag === DEVICE_TAG, `${panel.title}: column ${tag}`);
    }
  }
  const deviceVariable = dashboard.templating.list.find((variable) => variable.name === 'device');
  assert.ok(deviceVariable?.query.includes(`tag: "${DEVICE_TAG}"`));
});
