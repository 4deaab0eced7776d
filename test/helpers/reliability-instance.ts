// One Nucleon as its own process for the fuzz, fault and abuse suites and the
// soak run: `node --import tsx test/helpers/reliability-instance.ts <config.toml>`.
// It adds an echo application runner, so a canary device can round-trip
// (publish on <uid>/app/p/echo → app runner → <uid>/app/s/echo), and, with
// RECORD_FILE set, appends every ApplicationRequest it handles to that file
// (one line: uid, target, payload hex, ingest log id), which survives a SIGKILL of this process.
import { appendFileSync } from 'node:fs';
import { loadConfigFile } from '../../src/config/index.js';
import type { EventOf } from '../../src/events.js';
import { createLogger } from '../../src/logger.js';
import { Nucleon } from '../../src/nucleon.js';
import { stopOnSignals } from '../../src/signals.js';
import { EventRunner } from '../../src/runner.js';

class EchoApp extends EventRunner<'ApplicationRequest'> {
  constructor(private readonly recordFile: string | undefined) {
    super('echo-app', ['ApplicationRequest']);
  }

  protected async handle(event: EventOf<'ApplicationRequest'>): Promise<void> {
    // Synchronous on purpose: once handled, the line is in the kernel's page cache and outlives a SIGKILL.
    if (this.recordFile) appendFileSync(this.recordFile, `${event.uid} ${event.target} ${Buffer.from(event.payload).toString('hex')} ${event.log?.id ?? '-'}\n`);
    if (event.target === 'echo') await this.publish({ type: 'ApplicationResponse', uid: event.uid, target: 'echo', payload: event.payload });
  }
}

const file = process.argv[2];
if (!file) throw new Error('usage: reliability-instance.ts <config.toml>');
const { config } = await loadConfigFile(file);
const logger = createLogger({ level: config.log.level, format: 'json' });
// processMetrics: RSS and event-loop lag on /metrics, as `nucleon serve` has them.
const nucleon = new Nucleon(config, { logger, processMetrics: true });
await nucleon.addRunner(new EchoApp(process.env.RECORD_FILE || undefined));
void stopOnSignals(nucleon, logger).then((code) => process.exit(code));
await nucleon.start();
process.stdout.write('reliability instance ready\n');
