// `nucleon serve --workers N`: N cluster-mode instances in one machine's processes, sharing its ports (README "Workers").
export { runPrimary } from './primary.js';
export { runWorker, workerEnvironment } from './worker.js';
export { workerCount, workerConfig, workerDir } from './settings.js';
export { WorkerPool, RESTART_POLICY, type RestartPolicy } from './pool.js';
