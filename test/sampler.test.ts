// Sampler against the real OS: real child processes, real /proc, real files. No mocks.

import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import winston from 'winston';
import { watchSpawns } from '../bench/sampler';
import type { StatsEvent } from '../src/protocol';
import { readStat } from '../src/proc';
import { parseCpuTicks, percentOf, Sampler, SamplerOptions } from '../src/sampler';
import { eventually, tmpDir, vmRssBytes } from './helpers';

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

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'latin1' }).trim()) || 100;
const PAGE_SIZE = Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'latin1' }).trim()) || 4096;

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

/** The sampler's view of the current generation: generation 1 with these nodes. */
const gen1 = (...nodes: { pid: number; index: number }[]) => () => ({ generation: 1, nodes });

function newSampler(opts: Partial<SamplerOptions> & Pick<SamplerOptions, 'logger'>): { sampler: Sampler; events: StatsEvent[] } {
  const sampler = new Sampler({ intervalMs: 100, logFile: null, nodes: gen1(), ...opts });
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
    nodes: gen1({ pid: busy.pid!, index: 0 }, { pid: MISSING_PID, index: 1 }, { pid: idle.pid!, index: 2 }),
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
    expect(e.generation).toBe(1);
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
  // RSS is stat's: the kernel's fast counter, which may lag VmRSS by a batch of pages per CPU.
  const lag = Math.max(32, 2 * os.cpus().length) * os.cpus().length * 4096;
  expect(Math.abs(last.nodes[0].rss - vmRss.busy)).toBeLessThanOrEqual(Math.max(lag, 0.05 * vmRss.busy));
  expect(Math.abs(last.nodes[1].rss - vmRss.idle)).toBeLessThanOrEqual(Math.max(lag, 0.05 * vmRss.idle));
  expect(latest).toEqual({ generation: 1, host: last.host, nodes: last.nodes });

  // One JSONL line per published sample with its host part (nodes go to the timeline), monotonic clock increasing.
  const lines = readFileSync(logFile, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
  expect(lines).toHaveLength(count);
  lines.forEach((l, i) => {
    expect(Object.keys(l)).toEqual(['time', 'mono', 'generation', 'host']);
    expect(l.time).toBe(events[i].time);
    expect(l.generation).toBe(1);
    expect(l.host).toEqual(events[i].host);
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
    nodes: gen1({ pid: busy.pid!, index: 0 }, { pid: idle.pid!, index: 1 }),
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
  const { sampler, events } = newSampler({ logFile, logger, nodes: gen1({ pid: process.pid, index: 0 }) });
  await sampler.start();
  await eventually(() => events.length >= 2, 3000, 'two samples');
  expect(existsSync(logFile)).toBe(true);

  // A sample's append can land between the removal of the file and of the directory: retried.
  rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 10 });
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
      return { generation: 1, nodes: [{ pid: process.pid, index: 0 }] };
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

describe('host CPU from /proc/stat', () => {
  test('busy counts steal (as the contract\'s load always did); steal and iowait are also given on their own', () => {
    // user nice system idle iowait irq softirq steal guest guest_nice
    const before = parseCpuTicks('cpu  100 0 50 800 20 0 0 30 0 0\ncpu0 50 0 25 400 10 0 0 15 0 0\ncpu1 50 0 25 400 10 0 0 15 0 0\nintr 1 2\n');
    const after = parseCpuTicks('cpu  150 0 60 850 40 0 0 100 0 0\ncpu0 100 0 35 425 20 0 0 20 0 0\ncpu1 50 0 25 425 20 0 0 80 0 0\nintr 3 4\n');
    // Whole host: 200 ticks, of which user 50 + system 10 + steal 70 busy, idle 50, iowait 20.
    expect(['busy', 'steal', 'iowait'].map((p) => percentOf(p as 'busy', before.all, after.all))).toEqual([65, 35, 10]);
    expect(percentOf('busy', before.cores[0], after.cores[0])).toBe(65);
    expect(percentOf('steal', before.cores[0], after.cores[0])).toBe(5);
    expect(percentOf('busy', before.cores[1], after.cores[1])).toBe(65);
    expect(percentOf('steal', before.cores[1], after.cores[1])).toBe(65);
    expect(percentOf('iowait', before.cores[1], after.cores[1])).toBe(10);
  });

  test('the published host figures agree with /proc/stat and /proc/loadavg read at the same moments', async () => {
    await startChildren(); // a spinning child, so that busy is well above 0
    const { logger } = spyLogger();
    const { sampler } = newSampler({ intervalMs: 200, logger });
    // Listeners run synchronously right after the sampler's own read: read the truth there.
    const seen: { e: StatsEvent; stat: string; loadavg: string }[] = [];
    sampler.on('sample', (e) => seen.push({ e, stat: readFileSync('/proc/stat', 'latin1'), loadavg: readFileSync('/proc/loadavg', 'latin1') }));
    await sampler.start();
    await eventually(() => seen.length >= 7, 10_000, 'seven samples');
    await sampler.stop();
    const first = parseCpuTicks(seen[0].stat);
    const last = parseCpuTicks(seen.at(-1)!.stat);
    const windows = seen.slice(1).map((s) => s.e.host);
    for (const part of ['busy', 'steal', 'iowait'] as const) {
      const field = part === 'busy' ? 'load' : part;
      expect(Math.abs(mean(windows.map((h) => h[field])) - percentOf(part, first.all, last.all))).toBeLessThan(5);
      first.cores.forEach((c, i) => {
        const perCore = windows.map((h) => (part === 'busy' ? h.cpus[i] : part === 'steal' ? h.cpusSteal[i] : null));
        if (part !== 'iowait') expect(Math.abs(mean(perCore as number[]) - percentOf(part, c, last.cores[i]))).toBeLessThan(8);
      });
    }
    for (const { e } of seen) {
      expect(e.host.cpusSteal).toHaveLength(os.cpus().length);
      expect([...e.host.cpusSteal, e.host.steal, e.host.iowait].every(isPercent)).toBe(true);
      expect(e.host.steal).toBeLessThanOrEqual(e.host.load);
    }
    // The kernel updates the load averages every 5 s: at most one sample straddles an update.
    const same = seen.filter(({ e, loadavg }) => JSON.stringify(e.host.loadavg) === JSON.stringify(loadavg.split(' ').slice(0, 3).map(Number)));
    expect(same.length).toBeGreaterThanOrEqual(seen.length - 1);
  });
});

describe('per-node reading', () => {
  /** Pids whose /proc/<pid>/stat this process holds open. */
  function statFds(): number[] {
    const pids: number[] = [];
    for (const fd of readdirSync('/proc/self/fd')) {
      try {
        const m = /^\/proc\/(\d+)\/stat$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
        if (m) pids.push(Number(m[1]));
      } catch {
        // closed while listed
      }
    }
    return pids.sort((a, b) => a - b);
  }

  test('a node started between two samples is charged its CPU since it started (not 0), as /proc says', async () => {
    const { logger } = spyLogger();
    const listed: { pid: number; index: number }[] = [];
    const { sampler } = newSampler({ intervalMs: 300, logger, nodes: () => ({ generation: 1, nodes: listed }) });
    let child: ChildProcess | null = null;
    let prevMono = 0;
    let check: { cpu: number | undefined; expected: number; rss: number | undefined; statRss: number } | null = null;
    sampler.on('sample', (e, mono) => {
      if (child === null) {
        // Right after a sample: the child is listed from its fork on, as the manager lists a node.
        child = spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' });
        children.push(child);
        listed.push({ pid: child.pid!, index: 0 });
      } else if (check === null) {
        const stat = readStat(child.pid!)!;
        const node = e.nodes.find((n) => n.pid === child!.pid);
        check = { cpu: node?.cpu, expected: (stat.cpuTicks / CLK_TCK / ((mono - prevMono) / 1000)) * 100, rss: node?.rss, statRss: stat.rssPages * PAGE_SIZE };
      }
      prevMono = mono;
    });
    await sampler.start();
    await eventually(() => check !== null, 5000, 'the sample after the spawn');
    expect(check!.expected).toBeGreaterThan(0);
    // The same ticks, give or take one that fell between the two reads; the same RSS, give or take a page fault.
    expect(Math.abs(check!.cpu! - check!.expected)).toBeLessThan(5);
    expect(Math.abs(check!.rss! - check!.statRss)).toBeLessThanOrEqual(64 * PAGE_SIZE);
  });

  /** Both children's CPU in µs, as their cgroup would count it. */
  const cpuUsecOf = (...cs: ChildProcess[]): number => cs.reduce((sum, c) => sum + (readStat(c.pid!)!.cpuTicks * 1e6) / CLK_TCK, 0);

  test('while the nodes\' CPU counter stands still, readings are carried forward, and read again as soon as it moves', async () => {
    const { busy, idle } = await startChildren();
    const { logger, warnings } = spyLogger();
    // The counter the manager takes from the run's cgroup, here under the test's control: frozen
    // while the busy child spins (so carried samples show 0 for it), then true to the children.
    const frozen = cpuUsecOf(busy, idle);
    let honest = false;
    const { sampler, events } = newSampler({ logger, nodes: gen1({ pid: busy.pid!, index: 0 }, { pid: idle.pid!, index: 1 }), nodesCpuUsec: () => (honest ? cpuUsecOf(busy, idle) : frozen) });
    await sampler.start();
    await eventually(() => events.length >= 4, 5000, 'four samples');
    honest = true;
    const seen = events.length;
    await eventually(() => events.length >= seen + 2, 3000, 'two more samples');
    // Read, the spinning child shows CPU (how much depends on the machine's load); carried, exactly 0.
    const busyCpu = (e: StatsEvent) => e.nodes.find((n) => n.pid === busy.pid)!.cpu;
    // The first sample reads (no earlier counter); then carried until the counter moves.
    expect(events.slice(0, 4).map((e) => busyCpu(e) > 0)).toEqual([true, false, false, false]);
    // Carried readings keep the RSS of the last read.
    for (const e of events.slice(0, 4)) expect(e.nodes.find((n) => n.pid === idle.pid)!.rss).toBe(events[0].nodes.find((n) => n.pid === idle.pid)!.rss);
    // Once it moves, each sample reads (and charges the busy child its CPU since its last read, in
    // the first: what the carried ones hid, which a real counter would not have).
    expect(events.slice(seen, seen + 2).map((e) => busyCpu(e) > 0)).toEqual([true, true]);
    // The counter did count what the nodes used: no warning.
    expect(warnings()).toEqual([]);
  });

  test('carried at most 9 samples running; a node that ran unseen by the counter stops carrying for its generation, with a warning', async () => {
    const { busy, idle } = await startChildren();
    const { logger, warnings } = spyLogger();
    // A counter that never moves while the busy child spins: what the manager would see if that
    // node had moved itself out of the run's cgroup.
    let generation = 1;
    const { sampler, events } = newSampler({
      logger,
      nodes: () => ({ generation, nodes: [{ pid: busy.pid!, index: 0 }, { pid: idle.pid!, index: 1 }] }),
      nodesCpuUsec: () => 1,
    });
    await sampler.start();
    await eventually(() => events.length >= 13, 5000, 'thirteen samples');
    const busyCpu = (e: StatsEvent) => e.nodes.find((n) => n.pid === busy.pid)!.cpu;
    // The first sample reads; 9 carried; the 11th reads, finds the CPU the counter missed, and from
    // then on every sample reads.
    expect(events.slice(0, 13).map((e) => busyCpu(e) > 0)).toEqual([true, false, false, false, false, false, false, false, false, false, true, true, true]);
    expect(warnings().map((w) => w.message)).toEqual([expect.stringMatching(/^generation 1: nodes used \d+ ms of CPU that the run's cgroup did not count \(0 ms\): some node left its cgroup .* every node of this generation is read every sample from now on$/)]);
    // The next generation starts trusting the counter again.
    generation = 2;
    const seen = events.length;
    await eventually(() => events.length >= seen + 3, 3000, 'three more samples');
    expect(events.slice(seen, seen + 3).map((e) => busyCpu(e) > 0)).toEqual([true, false, false]);
  });

  test('one descriptor per listed live node, closed when it leaves the list or exits, all closed by stop()', async () => {
    const { busy, idle } = await startChildren();
    const { logger } = spyLogger();
    const listed = [{ pid: busy.pid!, index: 0 }, { pid: idle.pid!, index: 1 }];
    const { sampler, events } = newSampler({ logger, nodes: () => ({ generation: 1, nodes: [...listed] }) });
    const before = statFds();
    await sampler.start();
    const sampleAfter = async () => {
      const at = events.length;
      await eventually(() => events.length > at, 3000, 'a sample');
    };
    await sampleAfter();
    expect(statFds()).toEqual([...before, busy.pid!, idle.pid!].sort((a, b) => a - b));
    listed.shift();
    await sampleAfter();
    expect(statFds()).toEqual([...before, idle.pid!].sort((a, b) => a - b));
    // Still listed, but reaped: its reading fails, so its descriptor goes and it is left out.
    await new Promise<void>((resolve) => {
      idle.once('exit', () => resolve());
      idle.kill('SIGKILL');
    });
    await sampleAfter();
    expect(events.at(-1)!.nodes).toEqual([]);
    expect(statFds()).toEqual(before);
    listed.push({ pid: busy.pid!, index: 0 });
    await sampleAfter();
    expect(statFds()).toContain(busy.pid!);
    await sampler.stop();
    expect(statFds()).toEqual(before);
  });

  // The kernel hands out the pid after ns_last_pid next (root only): a reaped node's pid can be
  // given to a new process on purpose, as pid reuse would by chance.
  const LAST_PID = '/proc/sys/kernel/ns_last_pid';
  const canReusePids = (() => {
    try {
      accessSync(LAST_PID, constants.W_OK);
      return true;
    } catch {
      return false;
    }
  })();
  (canReusePids ? test : test.skip)('a reaped node\'s pid, reused by another process while the node is still listed, is not read as that node', async () => {
    const { logger } = spyLogger();
    const node = spawn('sleep', ['30'], { stdio: 'ignore' });
    children.push(node);
    const pid = node.pid!;
    const listed = [{ pid, index: 0 }];
    const { sampler, events } = newSampler({ intervalMs: 200, logger, nodes: () => ({ generation: 1, nodes: [...listed] }) });
    await sampler.start();
    await eventually(() => events.some((e) => e.nodes.some((n) => n.pid === pid)), 3000, 'a sample with the node');
    await new Promise<void>((resolve) => {
      node.once('exit', () => resolve());
      node.kill('SIGKILL');
    });
    // Reaped; its pid to a new process (other processes forking meanwhile may take it: retried).
    let other: ChildProcess | null = null;
    for (let attempt = 0; attempt < 50 && other?.pid !== pid; attempt++) {
      other?.kill('SIGKILL');
      writeFileSync(LAST_PID, String(pid - 1));
      other = spawn('sleep', ['30'], { stdio: 'ignore' });
      children.push(other);
    }
    expect(other!.pid).toBe(pid);
    const seen = events.length;
    await eventually(() => events.length >= seen + 2, 3000, 'two more samples');
    // Node 0 is still listed under that pid, but that process is not node 0.
    expect(events.slice(seen).map((e) => e.nodes)).toEqual([[], []]);
    expect(statFds()).not.toContain(pid);
    // A node listed anew under the pid is that process.
    listed[0] = { pid, index: 1 };
    await eventually(() => events.at(-1)!.nodes.some((n) => n.pid === pid && n.index === 1), 3000, 'the new node read');
  });

  test('a sample of many nodes yields to the event loop between slices, and still reads every node', async () => {
    const { logger } = spyLogger();
    // 450 listed nodes (this process, under as many indexes): three slices.
    const listed = Array.from({ length: 450 }, (_, index) => ({ pid: process.pid, index }));
    const order: string[] = [];
    const { sampler, events } = newSampler({
      intervalMs: 60_000,
      logger,
      nodes: () => {
        // Queued when the sample lists its nodes: runs before the sample ends only if the sample yields.
        setImmediate(() => order.push('other work'));
        return { generation: 1, nodes: listed };
      },
    });
    await sampler.start();
    await new Promise((resolve) => setImmediate(resolve)); // the baseline's own listing
    order.length = 0;
    sampler.on('sample', () => order.push('sample'));
    await (sampler as unknown as { sampleOnce(): Promise<void> }).sampleOnce();
    expect(order).toEqual(['other work', 'sample']);
    expect(events.at(-1)!.nodes.map((n) => n.index)).toEqual(listed.map((n) => n.index));
  });

  test('no process is started per sample: every way Node has to start one is counted while sampling', async () => {
    const { busy, idle } = await startChildren();
    const { logger } = spyLogger();
    const { sampler, events } = newSampler({ intervalMs: 50, logger, nodes: gen1({ pid: busy.pid!, index: 0 }, { pid: idle.pid!, index: 1 }) });
    await sampler.start(); // getconf runs here, once per process
    const { started, restore } = watchSpawns();
    try {
      // The hooks do see a process being started.
      execFileSync('true');
      expect(started).toHaveLength(1);
      started.length = 0;
      const at = events.length;
      await eventually(() => events.length >= at + 10, 5000, 'ten samples');
      // And latest(), the stats command's path.
      sampler.latest();
      expect(started).toEqual([]);
    } finally {
      restore();
    }
  });
});
