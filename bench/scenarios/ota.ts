import type { ScenarioResult } from '../lib/report.js';
import type { Scenario } from './context.js';

export const scenario7: Scenario = {
  id: 7,
  title: 'OTA: 200 devices download a 1 MiB image in 4 KiB MQTT chunks, 200 over HTTPS in 2 KiB ranges',
  async run(): Promise<ScenarioResult> {
    return { id: 7, title: this.title, notRun: 'the OTA runner (src/ota) is not in the build yet', metrics: [], notes: [] };
  },
};
