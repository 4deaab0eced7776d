// `nucleon serve --workers N`: N cluster-mode instances in one machine's processes, sharing its ports (README "Workers").
export { runPrimary } from './primary.js';
export { runWorker, workerEnvironment, type WorkerSetup } from './worker.js';
export { runIfWorker, runWorkers, type WorkersOptions } from './run.js';
export { workerCount, workerConfig, workerDir } from './settings.js';
export { WorkerPool, RESTART_POLICY, type RestartPolicy } from './pool.js';
