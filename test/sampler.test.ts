// Sampler against the real OS: real child processes, real /proc, real files. No mocks.

import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import winston from 'winston';
import type { StatsEvent } from '../src/protocol';
import { readStat } from '../src/proc';
import { Sampler, SamplerOptions } from '../src/sampler';
import { eventually, tmpDir } from './helpers';

/** Beyond PID_MAX_LIMIT (2^22): never a live process. */
const MISSING_PID = 0x3ffffff0;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface LogRecord { level: string; message: string }

/** A winston logger that only records into an array. */
function spyLogger(): { logger: winston.Logger; records: LogRecord[]; warnings: () => LogRecord[] } {
  const records: LogRecord[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      records.push(JSON.parse(String(chunk)));
      cb();
    },
  });
  const logger = winston.createLogger({ level: 'debug', format: winston.format.json(), transports: [new winston.transports.Stream({ stream })] });
  return { logger, records, warnings: () => records.filter((r) => r.level === 'warn') };
}

function vmRssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'latin1' }).trim()) || 100;

/** Reference point for what the kernel charges a process, independently of the sampler's windows. */
function cpuClock(pid: number): { ticks: number; t: bigint } {
  return { ticks: readStat(pid)!.cpuTicks, t: process.hrtime.bigint() };
}
/** Percent of one core the kernel charged `pid` since `from`. */
function cpuPercentSince(pid: number, from: { ticks: number; t: bigint }): number {
  const to = cpuClock(pid);
  return ((to.ticks - from.ticks) / CLK_TCK / (Number(to.t - from.t) / 1e9)) * 100;
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const isPercent = (x: number): boolean => x >= 0 && x <= 100 && Math.round(x * 10) / 10 === x;

let children: ChildProcess[] = [];
let samplers: Sampler[] = [];

async function startChildren(): Promise<{ busy: ChildProcess; idle: ChildProcess }> {
  const busy = spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' });
  const idle = spawn('sleep', ['30'], { stdio: 'ignore' });
  children.push(busy, idle);
  // Both past their start-up: the busy one spinning, the idle one exec'd into sleep.
  await eventually(() => (readStat(busy.pid!)?.cpuTicks ?? 0) >= 5, 3000, 'busy child spinning');
  await eventually(() => existsSync(`/proc/${idle.pid}/comm`) && readFileSync(`/proc/${idle.pid}/comm`, 'latin1') === 'sleep\n', 3000, 'idle child');
  return { busy, idle };
}

function newSampler(opts: Partial<SamplerOptions> & Pick<SamplerOptions, 'logger'>): { sampler: Sampler; events: StatsEvent[] } {
  const sampler = new Sampler({ intervalMs: 100, logFile: null, nodes: () => [], ...opts });
  samplers.push(sampler);
  const events: StatsEvent[] = [];
  sampler.on('sample', (e) => events.push(e));
  return { sampler, events };
}

afterEach(async () => {
  await Promise.all(samplers.map((s) => s.stop()));
  samplers = [];
  await Promise.all(
    children.map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          c.once('exit', () => resolve());
          c.kill('SIGKILL');
        }),
    ),
  );
  children = [];
});

test('samples host and nodes every interval, logs JSONL, skips missing pids, stops', async () => {
  const { busy, idle } = await startChildren();
  const { logger, records } = spyLogger();
  const logFile = path.join(tmpDir(), 'not', 'yet', 'stats.jsonl'); // parent dir is created
  const { sampler, events } = newSampler({
    logFile,
    logger,
    nodes: () => [
      { pid: busy.pid!, index: 0 },
      { pid: MISSING_PID, index: 1 },
      { pid: idle.pid!, index: 2 },
    ],
  });
  await sampler.start();
  const busyFrom = cpuClock(busy.pid!);
  expect(events).toHaveLength(0); // the baseline is not published
  expect((sampler as unknown as { timer: NodeJS.Timeout }).timer.hasRef()).toBe(false);
  await sleep(600);
  const busyTruth = cpuPercentSince(busy.pid!, busyFrom);
  const vmRss = { busy: vmRssBytes(busy.pid!), idle: vmRssBytes(idle.pid!) };
  const latest = sampler.latest();
  await sampler.stop();
  const count = events.length;
  expect(count).toBeGreaterThanOrEqual(3);

  for (const e of events) {
    expect(e.event).toBe('stats');
    expect(Number.isInteger(e.time)).toBe(true);
    expect(e.host.cpus).toHaveLength(os.cpus().length);
    expect(e.host.cpus.every(isPercent)).toBe(true);
    expect(isPercent(e.host.load)).toBe(true);
    expect(Number.isInteger(e.host.memUsed) && Number.isInteger(e.host.memTotal)).toBe(true);
    expect(e.host.memUsed).toBeGreaterThan(0);
    expect(e.host.memUsed).toBeLessThan(e.host.memTotal);
    // The missing pid is skipped; the others keep their index.
    expect(e.nodes.map((n) => [n.pid, n.index])).toEqual([
      [busy.pid, 0],
      [idle.pid, 2],
    ]);
    for (const n of e.nodes) {
      expect(Number.isInteger(n.rss)).toBe(true);
      expect(n.rss).toBeGreaterThan(0);
      expect(n.cpu).toBeGreaterThanOrEqual(0);
    }
    expect(e.nodes[1].cpu).toBeLessThan(5);
  }
  // The busy node's figures agree with what the kernel charged it over the run
  // (each 100 ms window is quantised to 10 ms ticks, so compare the mean).
  const busyCpu = events.map((e) => e.nodes[0].cpu);
  expect(Math.abs(mean(busyCpu) - busyTruth)).toBeLessThan(15);
  // A spinning child gets a whole core unless the machine is saturated (other test
  // files, other jobs); then only the agreement above can be asserted.
  if (busyTruth > 70) expect(median(busyCpu)).toBeGreaterThan(50);
  // The host figures see the spinning child (at least half a core of it): not a since-boot average.
  expect(median(events.map((e) => e.host.load))).toBeGreaterThan(50 / os.cpus().length);

  const last = events[count - 1];
  expect(Math.abs(last.nodes[0].rss - vmRss.busy) / vmRss.busy).toBeLessThan(0.2);
  expect(Math.abs(last.nodes[1].rss - vmRss.idle) / vmRss.idle).toBeLessThan(0.2);
  expect(latest).toEqual({ host: last.host, nodes: last.nodes });

  // One JSONL line per published sample, same content, monotonic clock increasing.
  const lines = readFileSync(logFile, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
  expect(lines).toHaveLength(count);
  lines.forEach((l, i) => {
    expect(Object.keys(l)).toEqual(['time', 'mono', 'host', 'nodes']);
    expect(l.time).toBe(events[i].time);
    expect(l.host).toEqual(events[i].host);
    expect(l.nodes).toEqual(events[i].nodes);
    if (i > 0) expect(l.mono).toBeGreaterThan(lines[i - 1].mono);
  });

  // Nothing was worth a warning (a missing pid is normal), and stop() stopped it.
  expect(records.filter((r) => r.level === 'warn' || r.level === 'error')).toEqual([]);
  await sleep(250);
  expect(events).toHaveLength(count);
});

test('latest() before the first interval is computed fresh from the start baseline', async () => {
  const { busy, idle } = await startChildren();
  const { logger } = spyLogger();
  const { sampler, events } = newSampler({
    intervalMs: 60000,
    logger,
    nodes: () => [
      { pid: busy.pid!, index: 0 },
      { pid: idle.pid!, index: 1 },
    ],
  });
  expect(() => sampler.latest()).toThrow(/before start/);
  await sampler.start();
  const busyFrom = cpuClock(busy.pid!);
  await sleep(300);
  const r = sampler.latest();
  const busyTruth = cpuPercentSince(busy.pid!, busyFrom);
  expect(events).toHaveLength(0);
  expect(r.host.cpus).toHaveLength(os.cpus().length);
  expect(r.host.cpus.every(isPercent) && isPercent(r.host.load)).toBe(true);
  expect(r.host.load).toBeGreaterThan(50 / os.cpus().length);
  expect(r.host.memUsed).toBeLessThan(r.host.memTotal);
  expect(r.nodes.map((n) => n.pid)).toEqual([busy.pid, idle.pid]);
  expect(Math.abs(r.nodes[0].cpu - busyTruth)).toBeLessThan(15);
  if (busyTruth > 70) expect(r.nodes[0].cpu).toBeGreaterThan(50); // see the first test
  expect(r.nodes[1].cpu).toBeLessThan(5);
});

test('a deleted log directory is warned about once; sampling goes on and the log resumes', async () => {
  const { logger, records, warnings } = spyLogger();
  const dir = path.join(tmpDir(), 'logs');
  const logFile = path.join(dir, 'stats.jsonl');
  const { sampler, events } = newSampler({ logFile, logger, nodes: () => [{ pid: process.pid, index: 0 }] });
  await sampler.start();
  await eventually(() => events.length >= 2, 3000, 'two samples');
  expect(existsSync(logFile)).toBe(true);

  rmSync(dir, { recursive: true, force: true });
  const at = events.length;
  await eventually(() => events.length >= at + 5, 3000, 'five more samples');
  expect(warnings()).toHaveLength(1);
  expect(warnings()[0].message).toContain(logFile);
  expect(warnings()[0].message).toContain('ENOENT');
  expect(warnings()[0].message).toMatch(/recreate/);

  mkdirSync(dir);
  await eventually(() => existsSync(logFile) && readFileSync(logFile, 'utf8').trimEnd().split('\n').length >= 2, 3000, 'log resumed');
  expect(records.some((r) => r.level === 'info' && /writable again/.test(r.message))).toBe(true);
  expect(warnings()).toHaveLength(1);
});

test('a sampling error is logged once per message, the tick is skipped, sampling goes on', async () => {
  const { logger, warnings } = spyLogger();
  let failures = 0; // start()'s baseline succeeds; the next 5 ticks fail
  const { sampler, events } = newSampler({
    logger,
    nodes: () => {
      if (failures-- > 0) throw new Error('node table unavailable');
      return [{ pid: process.pid, index: 0 }];
    },
  });
  await sampler.start();
  failures = 5;
  await eventually(() => events.length >= 2, 3000, 'samples after the errors');
  expect(failures).toBeLessThan(0);
  expect(warnings()).toHaveLength(1);
  expect(warnings()[0].message).toMatch(/stats sample skipped: node table unavailable/);
  expect(events.at(-1)!.nodes.map((n) => n.pid)).toEqual([process.pid]);
});
