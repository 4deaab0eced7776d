// Overview: the instance's health as small live charts (from the 'health'
// stream, the last hour kept in the browser); a click on a card opens its
// larger chart with axes and legend.
import { useEffect, useMemo, useState } from 'preact/hooks';
import type { HealthHistory, HealthSample, Series } from '../health-history.js';
import { formatBytes } from '../time.js';
import { Chart, type ChartSeries } from '../ui/chart.js';
import { useConsole } from '../ui/context.js';
import { Page } from '../ui/shell.js';
import { Time } from '../ui/time.js';

interface Metric {
  id: string;
  title: string;
  /** The chart's series from the history. */
  series: (history: HealthHistory) => Series;
  format: (value: number) => string;
  /** What the card shows as "now". */
  now: (sample: HealthSample) => string;
  empty?: (sample: HealthSample) => string | undefined;
}

const count = (value: number) => Math.round(value).toLocaleString('en-US');
const perSecond = (value: number) => `${value < 10 ? value.toFixed(1) : Math.round(value).toLocaleString('en-US')}/s`;
const perMinute = (value: number) => `${value < 10 ? value.toFixed(1) : Math.round(value)}/min`;
const ms = (value: number) => `${value < 10 ? value.toFixed(1) : Math.round(value)} ms`;
const bytes = (value: number) => formatBytes(Math.round(value));
const sum = (values: Record<string, number | null> | undefined) => Object.values(values ?? {}).reduce<number>((total, value) => total + (value ?? 0), 0);

const METRICS: readonly Metric[] = [
  { id: 'connections', title: 'Connected devices', format: count, series: (h) => h.series([{ label: 'connected', value: (s) => s.connections }]), now: (s) => count(s.connections) },
  {
    id: 'messages',
    title: 'Messages in / out',
    format: perSecond,
    series: (h) =>
      h.series([
        { label: 'in', value: (s) => s.messagesIn },
        { label: 'out', value: (s) => s.messagesOut },
      ]),
    now: (s) => `${perSecond(s.messagesIn ?? 0)} / ${perSecond(s.messagesOut ?? 0)}`,
  },
  {
    id: 'points',
    title: 'Telemetry points written',
    format: perSecond,
    series: (h) =>
      h.series([
        { label: 'written', value: (s) => s.pointsWritten },
        { label: 'accepted', value: (s) => s.pointsAccepted },
      ]),
    now: (s) => perSecond(s.pointsWritten ?? 0),
  },
  {
    id: 'ingest-lag',
    title: 'Ingest lag per runner',
    format: count,
    series: (h) => h.keyed((s) => s.lag),
    now: (s) => `${count(Math.max(0, ...Object.values(s.lag ?? {})))} events`,
    empty: (s) => (s.lag === undefined ? 'durability "memory": no ingest log' : undefined),
  },
  { id: 'spool', title: 'Influx spool', format: bytes, series: (h) => h.series([{ label: 'spool', value: (s) => s.spoolBytes }]), now: (s) => bytes(s.spoolBytes) },
  { id: 'refusals', title: 'Refusals by reason', format: perMinute, series: (h) => h.keyed((s) => s.refusals), now: (s) => perMinute(sum(s.refusals)) },
  { id: 'loop-lag', title: 'Event-loop lag (p99)', format: ms, series: (h) => h.series([{ label: 'p99', value: (s) => s.eventLoopLagMs }]), now: (s) => ms(s.eventLoopLagMs) },
  {
    id: 'memory',
    title: 'Memory (RSS)',
    format: bytes,
    series: (h) =>
      h.series([
        { label: 'rss', value: (s) => s.rssBytes },
        { label: 'heap used', value: (s) => s.heapUsedBytes },
      ]),
    now: (s) => bytes(s.rssBytes),
  },
];

export function OverviewView() {
  const { health } = useConsole();
  const [version, setVersion] = useState(health.version);
  const [open, setOpen] = useState<string | undefined>(undefined);
  useEffect(() => health.subscribe(() => setVersion(health.version)), [health]);
  const latest = health.latest;
  const selected = METRICS.find((metric) => metric.id === open);
  return (
    <Page title="Overview" actions={latest ? <span class="hint">updated <Time at={latest.t * 1000} /></span> : undefined}>
      {!latest && <p class="empty">Waiting for the first health report…</p>}
      <div class="metrics" data-samples={health.size}>
        {METRICS.map((metric) => (
          <MetricCard key={metric.id} metric={metric} version={version} selected={open === metric.id} onSelect={() => setOpen(open === metric.id ? undefined : metric.id)} />
        ))}
      </div>
      {selected && <MetricDetail key={selected.id} metric={selected} version={version} onClose={() => setOpen(undefined)} />}
    </Page>
  );
}

function useSeries(metric: Metric, version: number): { series: ChartSeries[]; data: Series['data'] } {
  const { health } = useConsole();
  const computed = useMemo(() => metric.series(health), [metric, health, version]);
  const labels = computed.labels.join('\u0000');
  const series = useMemo(() => computed.labels.map((label) => ({ label, format: metric.format })), [labels, metric]);
  return { series, data: computed.data };
}

function MetricCard({ metric, version, selected, onSelect }: { metric: Metric; version: number; selected: boolean; onSelect: () => void }) {
  const { health } = useConsole();
  const { series, data } = useSeries(metric, version);
  const latest = health.latest;
  const empty = latest ? metric.empty?.(latest) : undefined;
  return (
    <button type="button" class="metric" id={`metric-${metric.id}`} data-points={data[0].length} aria-pressed={selected} aria-controls="metric-detail" onClick={onSelect}>
      <span class="metric-title">{metric.title}</span>
      <span class="metric-value">{latest ? (empty ?? metric.now(latest)) : '–'}</span>
      {series.length > 0 ? <Chart compact series={series} data={data} height={48} label={`${metric.title}, the last hour`} /> : <span class="chart-empty hint">none so far</span>}
    </button>
  );
}

function MetricDetail({ metric, version, onClose }: { metric: Metric; version: number; onClose: () => void }) {
  const { series, data } = useSeries(metric, version);
  return (
    <section id="metric-detail" class="card metric-detail" aria-labelledby="metric-detail-title" data-metric={metric.id}>
      <div class="page-head">
        <h2 id="metric-detail-title">{metric.title}</h2>
        <div class="page-actions">
          <span class="hint">the last hour, kept in this browser</span>
          <button type="button" class="secondary" onClick={onClose}>
            Close
          </button>
        </div>
      </div>
      {series.length > 0 ? <Chart series={series} data={data} height={320} label={`${metric.title}, the last hour`} /> : <p class="empty">No data yet.</p>}
    </section>
  );
}
