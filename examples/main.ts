// Nucleon as a library: the whole broker from config.toml, plus the EnvApp runner.
import { createNucleon, loadConfigFile, stopOnSignals } from '../src/index.js';
import { EnvApp } from './env-app.js';

const { config } = await loadConfigFile(process.argv[2] ?? 'config.toml');
const nucleon = createNucleon(config);
await nucleon.addRunner(new EnvApp());
const stopped = stopOnSignals(nucleon);
await nucleon.start();
process.exitCode = await stopped;
