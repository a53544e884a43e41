// The failed-hello budget per peer (src/ratelimit.ts), on a fake clock.

import { FailureLimiter } from '../src/ratelimit';

function limiter(burst: number, refillMs: number, maxPeers?: number) {
  let t = 1_000_000;
  const l = new FailureLimiter({ burst, refillMs, maxPeers }, () => t);
  return { l, advance: (ms: number) => (t += ms) };
}

test('a peer gets `burst` failures, then must wait; the wait is what the refill needs', () => {
  const { l, advance } = limiter(3, 1000);
  expect(l.retryAfter('a')).toBe(0);
  expect([l.fail('a'), l.fail('a'), l.fail('a')]).toEqual([false, false, true]);
  expect(l.retryAfter('a')).toBe(1000);
  advance(400);
  expect(l.retryAfter('a')).toBe(600);
  advance(600);
  expect(l.retryAfter('a')).toBe(0);
  expect(l.fail('a')).toBe(true); // one refilled, one spent
  expect(l.retryAfter('a')).toBe(1000);
});

test('peers do not share a budget', () => {
  const { l } = limiter(1, 60_000);
  l.fail('a');
  expect(l.retryAfter('a')).toBeGreaterThan(0);
  expect(l.retryAfter('b')).toBe(0);
});

test('a bucket that has refilled is forgotten', () => {
  const { l, advance } = limiter(2, 100);
  l.fail('a');
  expect(l.size).toBe(1);
  advance(100);
  expect(l.retryAfter('a')).toBe(0);
  expect(l.size).toBe(0);
});

test('memory is bounded: past maxPeers the least recent peers are dropped', () => {
  const { l } = limiter(1, 60_000, 100);
  for (let i = 0; i < 1000; i++) l.fail(`10.0.${i >> 8}.${i & 255}`);
  expect(l.size).toBe(100);
  expect(l.retryAfter('10.0.3.231')).toBeGreaterThan(0); // the 1000th, most recent
  expect(l.retryAfter('10.0.0.0')).toBe(0);
});
