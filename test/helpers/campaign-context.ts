import path from 'node:path';
import type { TestContext } from 'node:test';
import { Registry } from 'prom-client';
import { EventBroker } from '../../src/broker/index.js';
import { validateConfig } from '../../src/config/index.js';
import { silentLogger } from '../../src/logger.js';
import type { CampaignRunner } from '../../src/campaigns/index.js';
import { OtaRunner } from '../../src/ota/index.js';
import { LocalPresence } from '../../src/presence/index.js';
import type { RunnerContext } from '../../src/runner.js';
import { LevelStore } from '../../src/store/index.js';
import { tempDir } from './index.js';

/**
 * What a campaigns runner runs on in a unit test: a real store, event broker
 * and started OTA runner, no listeners. `close()` stops them; the test stops
 * its campaigns runner first.
 */
export async function campaignContext(t: TestContext, options: { storeAt?: (location: string) => LevelStore } = {}): Promise<{ context: RunnerContext; broker: EventBroker; store: LevelStore; ota: OtaRunner; settle: (campaigns?: CampaignRunner) => Promise<void>; close: () => Promise<void> }> {
  const dir = await tempDir(t);
  const config = validateConfig({ store: { path: dir }, ota: { enabled: true, http: { enabled: false } } }, { baseDir: dir });
  const location = path.join(dir, 'kv');
  const store = options.storeAt?.(location) ?? new LevelStore(location);
  await store.open();
  const logger = silentLogger();
  const broker = new EventBroker({ inboxSize: 4096, maxWaiters: 4096, logger, metrics: new Registry() });
  broker.start();
  const context: RunnerContext = { config, broker, logger, metrics: new Registry(), store, presence: new LocalPresence('test', logger) };
  const ota = new OtaRunner();
  await ota.start(context);
  // Every event handled, every OTA command (carried out off the OTA runner's inbox) answered, every decision of the
  // campaigns runner (saved behind its inbox) carried out, and what all those set off.
  const settle = async (campaigns?: CampaignRunner) => {
    for (let round = 0; round < 20; round++) {
      await broker.drain(5000);
      if (ota.commandsInFlight === 0 && (campaigns?.decisionsInFlight ?? 0) === 0) return;
      await ota.commandsSettled();
      await campaigns?.decisionsSettled();
    }
    throw new Error('events, OTA commands or campaign decisions still under way after 20 rounds');
  };
  const close = async () => {
    await ota.stop();
    await broker.stop(1000);
    await store.close();
  };
  return { context, broker, store, ota, settle, close };
}
