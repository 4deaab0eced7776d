// The operator console in a real browser: the bundle built from web/ when it
// is missing or older than its sources (so a test never runs against a stale
// dist/console), Chromium opened on the admin listener and logged in, and the
// page's errors and foreign requests collected for the test to assert on.
import { existsSync, statSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';
import type { Page } from 'playwright-core';
import { buildConsole, CONSOLE_OUT_DIR } from '../../scripts/build-console.js';
import { API_KEY } from './admin-harness.js';
import { openChromium } from './browser.js';
import { repoRoot } from './index.js';

let built: Promise<void> | undefined;

/** Builds dist/console once per test process when a source is newer than the bundle. */
export function ensureConsoleBuilt(): Promise<void> {
  built ??= (async () => {
    const bundle = path.join(CONSOLE_OUT_DIR, 'app.js');
    const sources = [...filesUnder(path.join(repoRoot, 'web')), path.join(repoRoot, 'scripts', 'build-console.ts'), path.join(repoRoot, 'package-lock.json')];
    const newest = Math.max(...sources.map((file) => statSync(file).mtimeMs));
    if (!existsSync(bundle) || statSync(bundle).mtimeMs < newest || !existsSync(path.join(CONSOLE_OUT_DIR, 'index.html'))) await buildConsole();
  })();
  return built;
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.join(entry.parentPath, entry.name));
}

export interface ConsolePage {
  page: Page;
  base: string;
  /** Uncaught errors in the page. */
  pageErrors: string[];
  /** Requests to anything but the admin listener itself (the console is offline by design). */
  foreign: string[];
  /** The admin commands the page sent over its WebSocket, in order. */
  commands: string[];
}

/** Chromium on the console at `hash`, logged in with the test key (unless `login: false`). */
export async function openConsole(
  t: TestContext,
  chromiumPath: string,
  adminPort: number,
  options: { hash?: string; login?: boolean; width?: number; height?: number; colorScheme?: 'light' | 'dark' } = {},
): Promise<ConsolePage> {
  await ensureConsoleBuilt();
  const page = await openChromium(t, chromiumPath);
  if (options.width !== undefined) await page.setViewportSize({ width: options.width, height: options.height ?? 900 });
  if (options.colorScheme) await page.emulateMedia({ colorScheme: options.colorScheme });
  const base = `http://127.0.0.1:${adminPort}/`;
  const pageErrors: string[] = [];
  const foreign: string[] = [];
  const commands: string[] = [];
  page.on('websocket', (socket) =>
    socket.on('framesent', ({ payload }) => {
      if (typeof payload !== 'string') return;
      const cmd = (JSON.parse(payload) as { cmd?: unknown }).cmd;
      if (typeof cmd === 'string') commands.push(cmd);
    }),
  );
  page.on('pageerror', (error) => pageErrors.push(error.message));
  page.on('request', (request) => {
    const url = request.url();
    if (!url.startsWith(base) && !url.startsWith(`ws://127.0.0.1:${adminPort}/`) && !url.startsWith('data:')) foreign.push(url);
  });
  await page.goto(`${base}${options.hash ?? '#/overview'}`);
  if (options.login !== false) {
    await page.fill('#api-key', API_KEY);
    await page.click('#login-button');
    await page.waitForSelector('#status[data-state="connected"]');
  }
  return { page, base, pageErrors, foreign, commands };
}
