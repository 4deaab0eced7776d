// Nucleon as a library: the whole broker from config.toml, plus the EnvApp runner.
import { createNucleon, loadConfigFile } from '../src/index.js';
import { EnvApp } from './env-app.js';

const { config } = await loadConfigFile(process.argv[2] ?? 'config.toml');
const nucleon = createNucleon(config);
await nucleon.addRunner(new EnvApp());
await nucleon.start();

const stop = () => {
  nucleon.stop().then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
