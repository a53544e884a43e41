// The dashboard in a real browser: headless Chromium (Debian's package, driven by
// playwright-core) loads the page of a real manager, watches 8 real nodes go
// spawning -> running -> killed through a generate and a reset, checks that the
// manager's statechart highlights the state the manager reports, and saves a
// screenshot as test-output/dashboard.png.

import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { HerdClient } from '../src/client';
import { describeIfBrowser, launchBrowser } from './browser';
import { ROOT, RunningManager, startManager } from './helpers';
import { dashboardUrl } from './sse';

export const SCREENSHOT = path.join(ROOT, 'test-output', 'dashboard.png');

// Functions passed to page.evaluate run in the page; this project compiles without the DOM library.
declare const document: any;
declare const MutationObserver: any;

describeIfBrowser('dashboard in Chromium', () => {
  let m: RunningManager;
  let browser: Browser;
  let page: Page;
  const problems: string[] = [];

  beforeAll(async () => {
    [m, browser] = await Promise.all([startManager(['--dashboard', '0', '--stats-interval-ms', '250']), launchBrowser()]);
    page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('console', (msg) => msg.type() === 'error' && problems.push(`console: ${msg.text()}`));
    page.on('request', (req) => !req.url().startsWith('http://127.0.0.1:') && problems.push(`request outside the manager: ${req.url()}`));
  });
  afterAll(async () => {
    await browser?.close();
    await m?.stop();
  });

  /** The id of the one atomic state the manager chart highlights. */
  const highlighted = () => page.$$eval('#chart-manager g.state.atomic.active', (gs) => gs.map((g: any) => g.dataset.state as string));
  const cells = (phase: string) => page.locator(`#grid .cell[data-phase="${phase}"]`).count();

  test('shows nodes spawning, running and killed as they happen, and the current manager state', async () => {
    await page.goto(await dashboardUrl(m));
    await page.locator('#connection.live').waitFor({ timeout: 10000 });
    await page.locator('#chart-manager svg g.state.active').first().waitFor();
    expect(await highlighted()).toEqual(['manager.idle']);
    expect(await page.locator('#chart-node svg g.state').count()).toBeGreaterThan(5);

    const client = await HerdClient.connect(m.address);
    try {
      // Watch the cells while the nodes start: some are seen before they connect.
      const seen = page.evaluate(
        () =>
          new Promise<string[]>((resolve) => {
            const phases = new Set<string>();
            const grid = document.getElementById('grid');
            const note = () => grid.querySelectorAll('.cell').forEach((c: any) => phases.add(c.dataset.phase));
            const obs = new MutationObserver(() => {
              note();
              if (grid.querySelectorAll('.cell[data-phase="running"]').length === 8) {
                obs.disconnect();
                resolve([...phases]);
              }
            });
            obs.observe(grid, { subtree: true, childList: true, attributes: true });
          }),
      );
      const { nodes } = await client.generate(8, { wait: 'connected' });
      const phases = await seen;
      expect(phases).toEqual(expect.arrayContaining(['running']));
      expect(phases.some((p) => p === 'spawning' || p === 'launching')).toBe(true);
      expect(await cells('running')).toBe(8);
      expect(await page.locator('#chart-node text.count[data-count="node.running"]').textContent()).toBe('8');
      expect(await page.locator('#generation').textContent()).toBe('1');
      expect(await page.locator('#grid .cell').evaluateAll((els) => els.map((e: any) => Number(e.dataset.index)))).toEqual(nodes.map((n) => n.index));
      // A sample with the nodes' CPU reaches the cells and the chart.
      await page.waitForFunction(() => [...document.querySelectorAll('#grid .cell span')].every((s: any) => s.textContent !== ''), null, { timeout: 10000 });
      await page.waitForFunction(() => (document.querySelector('#cpu polyline.load')?.getAttribute('points') ?? '').split(' ').length >= 2, null, { timeout: 10000 });
      expect(await highlighted()).toEqual([`manager.${(await client.status()).state}`]);
      mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
      await page.screenshot({ path: SCREENSHOT, fullPage: true });

      // After the reset the cells stay, killed, until the next generation.
      await client.reset();
      await page.waitForFunction(() => document.querySelectorAll('#grid .cell[data-phase="killed"]').length === 8, null, { timeout: 10000 });
      await page.waitForFunction(() => document.querySelectorAll('#log li.node-killed').length === 8, null, { timeout: 10000 });
      expect(await cells('running')).toBe(0);
      expect(await highlighted()).toEqual(['manager.idle']);
      expect(await page.locator('#chart-node text.count[data-count="node.running"]').textContent()).toBe('');
      expect(await page.locator('#chart-node text.count[data-count="node.killed"]').textContent()).toBe('8');
    } finally {
      await client.close();
    }
    expect(problems).toEqual([]);
  });
});
