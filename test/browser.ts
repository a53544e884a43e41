// Shared helper for tests that drive a real browser: Debian's `chromium`, run
// headless through playwright-core (which never downloads a browser of its own).
//
// Without it, browser tests are skipped with a message, unless
// HERD_REQUIRE_BROWSER=1 (CI sets it), in which case they fail.

import { spawnSync } from 'node:child_process';
import type { Browser } from 'playwright-core';

export const CHROMIUM = process.env.HERD_CHROMIUM || '/usr/bin/chromium';

/** True when a missing browser must fail the run instead of skipping. */
export const REQUIRE_BROWSER = process.env.HERD_REQUIRE_BROWSER === '1';

let unavailable: string | undefined;

/** Why the browser cannot run ('' when it can); checked once per test file. */
export function browserUnavailableReason(): string {
  if (unavailable === undefined) {
    const r = spawnSync(CHROMIUM, ['--headless', '--no-sandbox', '--version'], { encoding: 'utf8', timeout: 15000 });
    unavailable = r.status === 0 && /chrom/i.test(r.stdout) ? '' : `${CHROMIUM} does not run (${r.error?.message ?? (r.stderr || '').trim().split('\n').pop() ?? `exit ${r.status}`})`;
  }
  return unavailable;
}

/** Headless Chromium; `--no-sandbox` because CI runs as root, `--disable-dev-shm-usage` for small containers. */
export async function launchBrowser(): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
}

/**
 * `describe` for tests that need the browser. When it is missing the body is not
 * run at all: one skipped test carries the reason, or, with HERD_REQUIRE_BROWSER=1,
 * one failing test.
 */
export function describeIfBrowser(name: string, fn: () => void): void {
  const reason = browserUnavailableReason();
  if (reason === '') {
    describe(name, fn);
    return;
  }
  describe(name, () => {
    if (REQUIRE_BROWSER) {
      test('Chromium is available (required by HERD_REQUIRE_BROWSER=1)', () => {
        throw new Error(`HERD_REQUIRE_BROWSER=1 but ${reason}; apt-get install chromium, or set HERD_CHROMIUM`);
      });
    } else {
      test.skip(`SKIPPED: ${reason}; apt-get install chromium, or set HERD_REQUIRE_BROWSER=1 to make this fail`, () => {});
    }
  });
}
