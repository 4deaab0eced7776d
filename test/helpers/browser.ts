// A headless Chromium for the dashboard tests (Debian's `chromium` through
// playwright-core): one page, closed after the test.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

export async function openChromium(t: TestContext, executablePath: string): Promise<Page> {
  // Chromium writes its profile until it has closed, so the folder goes only after that.
  const userDataDir = await mkdtemp(path.join(os.tmpdir(), 'nucleon-chromium-'));
  const launched: { context?: BrowserContext } = {};
  t.after(async () => {
    await launched.context?.close();
    await rm(userDataDir, { recursive: true, force: true });
  });
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    viewport: { width: 1400, height: 900 },
  });
  launched.context = context;
  // A bound for failures only (every wait is for a condition): generous, since CI machines may be busy.
  context.setDefaultTimeout(60_000);
  return context.pages()[0] ?? (await context.newPage());
}
