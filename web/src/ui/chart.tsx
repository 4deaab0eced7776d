// A uPlot chart that follows its box's width and takes new data without being
// rebuilt (setData); it is rebuilt only when its series change. Times on the
// x axis are seconds since the epoch (uPlot's unit), drawn in the browser's
// time zone.
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { formatAbsolute, formatClock } from '../time.js';

export interface ChartSeries {
  label: string;
  /** Formats a y value for the legend and the axis. */
  format?: (value: number) => string;
}

export interface ChartProps {
  series: readonly ChartSeries[];
  /** [x seconds[], one y array per series]. */
  data: uPlot.AlignedData;
  height: number;
  /** A sparkline: no axes, no legend, no cursor. */
  compact?: boolean;
  /** The legend under a full chart (default: shown); small charts with their value in the title go without. */
  legend?: boolean;
  label: string;
}

const PALETTE = ['#2f6fed', '#e8762c', '#1f9d55', '#c2410c', '#8b5cf6', '#0891b2', '#be185d', '#65a30d'];

export function seriesColor(index: number): string {
  return PALETTE[index % PALETTE.length] ?? '#2f6fed';
}

/** Tick labels in the console's one 24-hour form (uPlot's default is the locale's, "8:13pm"); seconds when the span is short. */
function timeTicks(u: uPlot, splits: number[]): string[] {
  const x = u.scales.x;
  const span = (x?.max ?? 0) - (x?.min ?? 0);
  return splits.map((seconds) => formatClock(seconds * 1000, span < 300));
}

/** uPlot's own padded range, except that a flat series (0 devices all hour) still gets a band to draw its line in. */
function yRange(_u: uPlot, min: number, max: number): uPlot.Range.MinMax {
  if (min !== max) return uPlot.rangeNum(min, max, 0.1, true);
  if (min === 0) return [0, 1];
  const pad = Math.abs(min) * 0.1;
  return [min - pad, max + pad];
}

export function Chart({ series, data, height, compact = false, legend = !compact, label }: ChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | undefined>(undefined);
  const latest = useRef(data);
  latest.current = data;
  const shape = `${compact ? 'c' : 'f'}:${legend ? 'l' : ''}:${height}:${series.map((s) => s.label).join('\u0000')}`;

  useEffect(() => {
    const element = box.current;
    if (!element) return undefined;
    const styles = getComputedStyle(element);
    const ink = styles.getPropertyValue('--muted').trim() || '#6b7280';
    const grid = styles.getPropertyValue('--line').trim() || '#e3e6eb';
    const format = series[0]?.format;
    const options: uPlot.Options = {
      width: Math.max(100, element.clientWidth),
      height,
      legend: { show: legend },
      // A sparkline's line at 0 would sit on the box's edge: a little room around it.
      ...(compact ? { padding: [4, 2, 4, 2] as uPlot.Padding } : {}),
      cursor: compact ? { show: false } : { drag: { x: true, y: false } },
      // A flat series (0 devices all hour) still draws a line: the y range never collapses to one value.
      scales: { x: { time: true }, y: { range: yRange } },
      axes: compact
        ? [{ show: false }, { show: false }]
        : [
            { stroke: ink, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, values: timeTicks, space: 80 },
            { stroke: ink, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, size: 64, ...(format ? { values: (_u: uPlot, values: number[]) => values.map((v) => format(v)) } : {}) },
          ],
      series: [
        { value: (_u: uPlot, seconds: number | null) => (seconds === null ? '–' : formatAbsolute(seconds * 1000)) },
        ...series.map((s, index) => ({
          label: s.label,
          stroke: seriesColor(index),
          width: compact ? 1.5 : 2,
          fill: compact && series.length === 1 ? `${seriesColor(index)}22` : undefined,
          points: { show: false },
          ...(s.format ? { value: (_u: uPlot, value: number | null) => (value === null ? '–' : (s.format as (v: number) => string)(value)) } : {}),
        })),
      ],
    };
    const chart = new uPlot(options, latest.current, element);
    plot.current = chart;
    const resize = new ResizeObserver(() => {
      const width = Math.max(100, element.clientWidth);
      if (width !== chart.width) chart.setSize({ width, height });
    });
    resize.observe(element);
    return () => {
      resize.disconnect();
      chart.destroy();
      plot.current = undefined;
    };
    // Rebuilt only when the series or the size change; data goes through setData below.
  }, [shape]);

  useEffect(() => {
    plot.current?.setData(data);
  }, [data]);

  return <div ref={box} class={compact ? 'chart compact' : 'chart'} role="img" aria-label={label} />;
}
