import path from 'node:path';
import { assertNever, type EventOf } from '../events.js';
import { EventRunner, type RunnerContext } from '../runner.js';
import { InfluxHttpSink } from './http-sink.js';
import { InfluxMetrics } from './metrics.js';
import { InvalidPointError, influxPointToLine, type Precision } from './points.js';
import { Spool } from './spool.js';
import { InfluxWriter } from './writer.js';

type Accepted = 'TelemetryReceived' | 'InfluxDataSave';

/**
 * Writes device telemetry (`TelemetryReceived`) and application points
 * (`InfluxDataSave`) to InfluxDB through an InfluxWriter. Started only when
 * the config has an `[influx]` section.
 */
export class InfluxRunner extends EventRunner<Accepted> {
  private writer: InfluxWriter | undefined;
  private precision: Precision = 'ms';

  constructor() {
    // Its cursor in the ingest log moves once points are written to InfluxDB or durable in the spool, not when handled.
    super('influx', ['TelemetryReceived', 'InfluxDataSave'], { durable: 'manual' });
  }

  protected override async onStart(context: RunnerContext): Promise<void> {
    const config = context.config.influx;
    if (!config) throw new Error('the influx runner needs an [influx] section in the config');
    this.precision = config.precision;
    const spoolDir = config.spool_dir === '' ? path.join(context.config.store.path, 'influx-spool') : config.spool_dir;
    // The gauges read the spool and the writer at scrape time, after both exist.
    const metrics: InfluxMetrics = new InfluxMetrics(context.metrics, {
      spoolBytes: () => spool.pendingBytes,
      bufferedPoints: (): number => writer.bufferedPoints,
    });
    const spool = new Spool({
      dir: spoolDir,
      maxBytes: config.spool_max_bytes,
      onCorrupt: (info) => {
        metrics.spoolCorruptBytes.inc(info.bytes);
        context.logger.error(info, 'damaged data in the Influx spool (a write torn by a crash?); skipped the rest of that segment');
      },
    });
    const writer: InfluxWriter = new InfluxWriter({
      sink: new InfluxHttpSink({ url: config.url, org: config.org, bucket: config.bucket, token: config.token, timeoutMs: config.timeout_ms, gzip: config.gzip }),
      spool,
      precision: config.precision,
      batchSize: config.batch_size,
      flushIntervalMs: config.flush_interval_ms,
      maxBufferPoints: config.max_buffer_points,
      maxRetries: config.max_retries,
      retryInitialMs: config.retry_initial_ms,
      retryMaxMs: config.retry_max_ms,
      logger: context.logger,
      metrics,
      onSettled: (seq) => context.broker.commit(this.name, seq),
    });
    await writer.start();
    this.writer = writer;
    context.logger.info({ url: config.url, bucket: config.bucket, spoolDir }, 'writing telemetry to InfluxDB');
  }

  protected override async onStop(context: RunnerContext): Promise<void> {
    const writer = this.writer;
    this.writer = undefined;
    // Half the stop budget: the broker drains and other runners stop within the rest.
    await writer?.stop(Math.floor(context.config.broker.stop_timeout_ms / 2));
  }

  /** Synchronous unless the writer's buffer is full (then the promise is the back-pressure). */
  protected handle(event: EventOf<Accepted>): Promise<void> | undefined {
    const writer = this.writer;
    if (!writer) return undefined;
    if (event.type === 'TelemetryReceived') {
      const seq = event.log?.seq;
      try {
        return writer.acceptTelemetry(event.uid, event.telemetry, event.receivedAt, this.precision, seq);
      } catch (error) {
        if (!(error instanceof InvalidPointError)) throw error;
        writer.drop('invalid', 1, { subject: event.uid, reason: error.reason });
        return writer.accept([], seq);
      }
    }
    const lines: string[] = [];
    switch (event.type) {
      case 'InfluxDataSave': {
        const now = Date.now();
        for (const point of event.points) this.convert(writer, lines, point.measurement, () => influxPointToLine(point, now, this.precision));
        break;
      }
      default:
        assertNever(event);
    }
    return writer.accept(lines);
  }

  /** Bad input is counted and logged, never thrown: the other points of the event still go out. */
  private convert(writer: InfluxWriter, lines: string[], subject: string, toLine: () => string): void {
    try {
      lines.push(toLine());
    } catch (error) {
      if (!(error instanceof InvalidPointError)) throw error;
      writer.drop('invalid', 1, { subject, reason: error.reason });
    }
  }
}
