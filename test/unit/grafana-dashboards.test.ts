// docs/grafana/*.json import cleanly into any Grafana: every datasource is an
// `__inputs` entry (Dashboards → Import asks for it), and the same `${DS_…}`
// names are datasource variables, so the files also work unchanged when
// provisioned (docker-compose.yml), where Grafana does not fill `__inputs`.
// The /metrics dashboard only queries metrics and labels Nucleon serves: the
// README metrics list, which test/integration/admin-metrics checks against a
// running instance's /metrics.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { parser as promqlParser } from '@prometheus-io/lezer-promql';
import { repoRoot } from '../helpers/index.js';

interface Input {
  name: string;
  type: string;
  pluginId: string;
}

interface Target {
  refId: string;
  expr?: string;
  query?: string;
  datasource?: unknown;
}

interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: unknown;
  targets?: Target[];
}

interface Variable {
  name: string;
  type: string;
  query?: unknown;
  datasource?: unknown;
}

interface Dashboard {
  __inputs?: Input[];
  __requires?: { type: string; id: string }[];
  uid: string;
  panels: Panel[];
  templating: { list: Variable[] };
}

const DASHBOARDS = ['nucleon-fleet.json', 'nucleon-metrics.json'];

function readDashboard(file: string): Dashboard {
  return JSON.parse(readFileSync(path.join(repoRoot, 'docs/grafana', file), 'utf8')) as Dashboard;
}

/** Every value under a `datasource` key, with where it was found. */
function datasourceRefs(node: unknown, at = '$'): { at: string; ref: unknown }[] {
  if (Array.isArray(node)) return node.flatMap((item, i) => datasourceRefs(item, `${at}[${i}]`));
  if (typeof node !== 'object' || node === null) return [];
  return Object.entries(node).flatMap(([key, value]) => (key === 'datasource' ? [{ at: `${at}.${key}`, ref: value }] : datasourceRefs(value, `${at}.${key}`)));
}

for (const file of DASHBOARDS) {
  test(`${file}: every datasource reference is an __inputs variable that a datasource variable of the same name also resolves`, () => {
    const dashboard = readDashboard(file);
    const inputs = dashboard.__inputs ?? [];
    assert.ok(inputs.length > 0, '__inputs');
    for (const input of inputs) {
      assert.equal(input.type, 'datasource');
      assert.match(input.name, /^DS_[A-Z0-9_]+$/);
      assert.ok(dashboard.__requires?.some((r) => r.type === 'datasource' && r.id === input.pluginId), `__requires lists ${input.pluginId}`);
      const variable = dashboard.templating.list.find((v) => v.name === input.name);
      assert.equal(variable?.type, 'datasource', `a datasource variable ${input.name} for provisioning`);
      assert.equal(variable.query, input.pluginId);
    }
    const byUid = new Map(inputs.map((input) => [`\${${input.name}}`, input]));
    const refs = datasourceRefs({ panels: dashboard.panels, templating: dashboard.templating });
    const used = new Set<string>();
    for (const { at, ref } of refs) {
      const { type, uid } = (ref ?? {}) as { type?: string; uid?: string };
      const input = byUid.get(uid ?? '');
      assert.ok(input, `${at}: uid ${JSON.stringify(uid)} must be one of ${[...byUid.keys()].join(', ')}`);
      assert.equal(type, input.pluginId, `${at}: type`);
      used.add(input.name);
    }
    assert.deepEqual([...used].sort(), inputs.map((input) => input.name).sort(), 'every input is used');

    const panels = dashboard.panels.filter((panel) => panel.type !== 'row');
    assert.ok(panels.length > 0);
    assert.equal(new Set(dashboard.panels.map((panel) => panel.id)).size, dashboard.panels.length, 'panel ids unique');
    for (const panel of panels) {
      assert.ok(panel.datasource, `${panel.title}: a datasource`);
      assert.ok(panel.targets && panel.targets.length > 0, `${panel.title}: a query`);
      for (const target of panel.targets) assert.ok(target.datasource, `${panel.title} ${target.refId}: a datasource`);
    }
    // Panels side by side, none over another (Grafana would shift them on import).
    const cells = new Set<string>();
    for (const panel of dashboard.panels) {
      const { x, y, w, h } = panel.gridPos;
      assert.ok(x >= 0 && w > 0 && x + w <= 24, `${panel.title}: within the 24 columns`);
      for (let col = x; col < x + w; col++) {
        for (let row = y; row < y + h; row++) {
          assert.ok(!cells.has(`${col},${row}`), `${panel.title}: overlaps another panel at ${col},${row}`);
          cells.add(`${col},${row}`);
        }
      }
    }
  });
}

/** README "Admin → Metrics" list: name → type and labels. */
function documentedMetrics(): Map<string, { type: string; labels: Set<string> }> {
  const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  const section = readme.split('<!-- metrics list: begin -->')[1]?.split('<!-- metrics list: end -->')[0] ?? '';
  const metrics = new Map<string, { type: string; labels: Set<string> }>();
  for (const [, name = '', type = '', labels = ''] of section.matchAll(/^\| `(nucleon_\w+)` \| (\w+) \|([^|]*)\|/gm)) {
    metrics.set(name, { type, labels: new Set(labels.split(',').map((label) => label.trim()).filter((label) => label !== '')) });
  }
  return metrics;
}

/** The documented metric a series name belongs to: itself, or a histogram's _bucket/_sum/_count. */
function metricOf(series: string, documented: ReturnType<typeof documentedMetrics>): string | undefined {
  if (documented.has(series)) return series;
  const base = series.replace(/_(bucket|sum|count)$/, '');
  return base !== series && documented.get(base)?.type === 'histogram' ? base : undefined;
}

/**
 * Syntax errors of a panel's PromQL, by Prometheus's own grammar (the one its UI
 * uses), after Grafana's range macros are put in as the durations they become.
 */
function promqlErrors(expr: string): string[] {
  const query = expr.replaceAll('$__rate_interval', '1m').replaceAll('$__range', '1h').replaceAll('$__interval', '15s');
  const errors: string[] = [];
  promqlParser.parse(query).iterate({
    enter: (node) => {
      if (node.type.isError) errors.push(`at ${node.from}: ${JSON.stringify(query.slice(Math.max(0, node.from - 20), node.to + 20))}`);
    },
  });
  return errors;
}

/** Labels every series has in Prometheus: the scrape's, and le on histogram buckets. */
const SCRAPE_LABELS = ['instance', 'job'];

test('the /metrics dashboard\'s PromQL parses and queries only metrics and labels Nucleon serves, and covers each part', () => {
  const documented = documentedMetrics();
  assert.ok(documented.size > 30, 'the README metrics list is there');
  const dashboard = readDashboard('nucleon-metrics.json');
  const expressions: { where: string; expr: string }[] = [];
  for (const panel of dashboard.panels) for (const target of panel.targets ?? []) expressions.push({ where: `${panel.title} ${target.refId}`, expr: target.expr ?? '' });
  for (const variable of dashboard.templating.list) {
    if (variable.type === 'query') expressions.push({ where: `variable ${variable.name}`, expr: (variable.query as { query: string }).query });
  }
  const used = new Set<string>();
  for (const { where, expr } of expressions) {
    // label_values() is Grafana's, not PromQL.
    if (!where.startsWith('variable ')) assert.deepEqual(promqlErrors(expr), [], `${where}: PromQL syntax of ${expr}`);
    const series = [...expr.matchAll(/\bnucleon_\w+/g)].map((m) => m[0]);
    assert.ok(series.length > 0, `${where}: queries a Nucleon metric: ${expr}`);
    const labels = new Set(SCRAPE_LABELS);
    for (const name of series) {
      const metric = metricOf(name, documented);
      assert.ok(metric, `${where}: ${name} is not in the README metrics list`);
      used.add(metric);
      for (const label of documented.get(metric)?.labels ?? []) labels.add(label);
      if (name.endsWith('_bucket')) labels.add('le');
    }
    for (const [, selector = ''] of expr.matchAll(/\bnucleon_\w+\{([^}]*)\}/g)) {
      for (const [, label] of selector.matchAll(/(\w+)\s*(?:=~|!~|!=|=)/g)) assert.ok(labels.has(label ?? ''), `${where}: label ${label} in ${expr}`);
    }
    for (const [, list = ''] of expr.matchAll(/\b(?:by|without) \(([^)]*)\)/g)) {
      for (const label of list.split(',').map((l) => l.trim())) assert.ok(labels.has(label), `${where}: grouping by ${label} in ${expr}`);
    }
    for (const [, name = ''] of expr.matchAll(/label_values\(\w+, (\w+)\)/g)) assert.ok(labels.has(name), `${where}: label_values of ${name}`);
  }
  // The list: connections, message rates, ingest lag, Influx write errors, OTA, campaigns.
  for (const metric of [
    'nucleon_mqtt_connected_clients',
    'nucleon_mqtt_connections_total',
    'nucleon_mqtt_messages_received_total',
    'nucleon_mqtt_messages_sent_total',
    'nucleon_ingest_lag_events',
    'nucleon_influx_write_seconds',
    'nucleon_influx_points_dropped_total',
    'nucleon_ota_bytes_served_total',
    'nucleon_ota_requests_total',
    'nucleon_campaign_devices',
    'nucleon_campaign_stage',
  ]) {
    assert.ok(used.has(metric), `a panel shows ${metric}`);
  }
});
