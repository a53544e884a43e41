// The timeline writer in process, on real files: batching, ordering, generations.
// (The manager's own timeline is tested end to end in telemetry.e2e.test.ts.)

import fs, { readFileSync } from 'node:fs';
import path from 'node:path';
import type { NodeView } from '../machines/node';
import type { Logger } from '../src/logger';
import type { NodePhase, StatsEvent, TimelineLine } from '../src/protocol';
import { Timeline } from '../src/timeline';
import { tmpDir } from './helpers';

const logger = { warn: jest.fn(), info: jest.fn(), debug: jest.fn(), error: jest.fn() } as unknown as Logger;

function timeline(current = { generation: 1, target: 1000 }) {
  return new Timeline({
    logDir: tmpDir(),
    logger,
    manager: () => ({ version: 't', hostname: 'h', pid: 1, address: '127.0.0.1:1' }),
    intervalMs: 1000,
    current: () => current,
  });
}

const view = (generation: number, index: number, phase: NodePhase): NodeView =>
  ({ generation, index, phase, pid: 1000 + index, startedAt: 1, connectedAt: null, exitCode: null, signal: null, outcome: null, escaped: 0, failure: null }) as NodeView;

const lines = (file: string) => readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as TimelineLine);

afterEach(() => jest.restoreAllMocks());

test('1000 nodes starting and connecting are a few writes, not 2000, in the order they happened', async () => {
  const t = timeline();
  const appends = jest.spyOn(fs, 'appendFile');
  for (let i = 0; i < 1000; i++) t.phase(view(1, i, 'spawning'), 'launching');
  for (let i = 0; i < 1000; i++) t.phase(view(1, i, 'running'), 'spawning');
  expect(appends).not.toHaveBeenCalled(); // batched, not written from inside the event
  await t.close();
  expect(appends.mock.calls.length).toBeLessThanOrEqual(2);
  const all = lines(t.fileOf(1));
  expect(all).toHaveLength(2001);
  expect(all[0]).toMatchObject({ type: 'header', generation: 1, n: 1000 });
  expect(all.slice(1, 1001).map((l) => (l.type === 'node' ? l.index : -1))).toEqual([...Array(1000).keys()]);
  const running = all.slice(1001) as Extract<TimelineLine, { type: 'node' }>[];
  expect(running.every((l, i) => l.index === i && l.from === 'spawning' && l.to === 'running' && l.latencyMs! >= 0)).toBe(true);
});

test('a sample is written at once; samples without nodes or before any generation are not', async () => {
  const t = timeline();
  const sample = (generation: number, nodes: StatsEvent['nodes']): StatsEvent =>
    ({ event: 'stats', time: Date.now(), generation, host: {} as StatsEvent['host'], nodes });
  t.sample(sample(0, [{ pid: 1, index: 0, cpu: 1, rss: 1 }]), 1);
  t.sample(sample(1, []), 2);
  t.sample(sample(1, [{ pid: 1000, index: 0, cpu: 50, rss: 4096 }]), 3);
  await t.flush();
  expect(lines(t.fileOf(1)).map((l) => l.type)).toEqual(['header', 'sample']);
  expect(fs.existsSync(t.fileOf(0))).toBe(false);
});

test('each generation gets its own file and header; a late line of an older one joins its file without a header', async () => {
  const current = { generation: 1, target: 1 };
  const t = timeline(current);
  t.phase(view(1, 0, 'spawning'), 'launching');
  Object.assign(current, { generation: 2, target: 2 });
  t.phase(view(2, 0, 'spawning'), 'launching');
  t.phase(view(1, 0, 'killed'), 'stopping');
  await t.close();
  const old = lines(t.fileOf(1));
  expect(old.map((l) => `${l.type} ${l.generation}`)).toEqual(['header 1', 'node 1', 'node 1']);
  expect(old[2]).toMatchObject({ to: 'killed', latencyMs: null });
  expect(lines(t.fileOf(2))).toEqual([expect.objectContaining({ type: 'header', generation: 2, n: 2 }), expect.objectContaining({ type: 'node', index: 0, to: 'spawning' })]);
  expect(path.dirname(t.fileOf(2))).toBe(t.dir);
});
