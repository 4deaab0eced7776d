#!/usr/bin/env node
/**
 * The `nucleon` command's entry (package.json "bin"). libuv sizes its thread
 * pool (file and store reads, DNS, scrypt) from UV_THREADPOOL_SIZE when the
 * pool is first used, and Node 20's ES module loader already uses it to read
 * the modules: set in an ES module, even the first one imported, it comes too
 * late. So this file is CommonJS and sets it before the first import.
 *
 * 8 threads, not libuv's 4: password checks take at most
 * `limits.password_checks_concurrent` (2 by default) of them, so file and
 * store reads keep at least 6 even during a login burst. A value in the
 * environment wins.
 */
if (!process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = '8';

import('./cli.js').catch((error: unknown) => {
  process.stderr.write(`nucleon: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
