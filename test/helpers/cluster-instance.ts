// One cluster instance as its own process, with an app runner that counts what it
// processes: `node --import tsx test/helpers/cluster-instance.ts <config.toml>`.
// The test asks it through the admin endpoint (`app.request`):
//   target "counts" → {total, distinct, duplicates, byUid}
//   target "send"   payload {uid, target, data} → publishes an ApplicationResponse from this instance
import { loadConfigFile } from '../../src/config/index.js';
import type { EventOf } from '../../src/events.js';
import { createLogger } from '../../src/logger.js';
import { Nucleon } from '../../src/nucleon.js';
import { stopOnSignals } from '../../src/signals.js';
import { EventRunner } from '../../src/runner.js';

type Accepted = 'ApplicationRequest' | 'ApplicationManagementRequest';

class CountingApp extends EventRunner<Accepted> {
  private total = 0;
  private readonly seen = new Set<string>();
  private duplicates = 0;
  private readonly byUid = new Map<string, number>();

  constructor() {
    super('counting-app', ['ApplicationRequest', 'ApplicationManagementRequest']);
  }

  protected async handle(event: EventOf<Accepted>): Promise<void> {
    if (event.type === 'ApplicationRequest') {
      this.total++;
      this.byUid.set(event.uid, (this.byUid.get(event.uid) ?? 0) + 1);
      const key = `${event.uid}/${event.target}/${Buffer.from(event.payload).toString('hex')}`;
      if (this.seen.has(key)) this.duplicates++;
      else this.seen.add(key);
      if (event.target === 'echo') await this.publish({ type: 'ApplicationResponse', uid: event.uid, target: 'echo', payload: event.payload });
      return;
    }
    if (event.target === 'counts') {
      const payload = { total: this.total, distinct: this.seen.size, duplicates: this.duplicates, byUid: Object.fromEntries(this.byUid) };
      await this.publish({ type: 'ApplicationManagementResponse', correlationId: event.correlationId, payload });
      return;
    }
    if (event.target === 'send') {
      const { uid, target, data } = event.payload as { uid: string; target: string; data: string };
      await this.publish({ type: 'ApplicationResponse', uid, target, payload: Buffer.from(data) });
      await this.publish({ type: 'ApplicationManagementResponse', correlationId: event.correlationId, payload: { sent: true } });
      return;
    }
    await this.publish({ type: 'ApplicationManagementResponse', correlationId: event.correlationId, error: { code: 'UNKNOWN_TARGET', message: event.target } });
  }
}

const file = process.argv[2];
if (!file) throw new Error('usage: cluster-instance.ts <config.toml>');
const { config } = await loadConfigFile(file);
const logger = createLogger({ level: config.log.level, format: 'json' });
const nucleon = new Nucleon(config, { logger });
await nucleon.addRunner(new CountingApp());
void stopOnSignals(nucleon, logger).then((code) => process.exit(code));
await nucleon.start();
const ports = {
  mqtt: (nucleon.runner('mqtt') as { port(name: string): number | undefined } | undefined)?.port('tcp'),
  admin: (nucleon.runner('admin') as { address(): { port: number } | undefined } | undefined)?.address()?.port,
};
logger.info({ ports, instance: nucleon.cluster?.instanceId }, 'cluster instance ready');
