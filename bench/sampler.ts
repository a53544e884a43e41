// The sampler's own cost, for `npm run bench`: the manager's Sampler (and its timeline
// writer) run in this process at 1 Hz over live processes the bench started, against
// the previous per-node read (readFileSync of /proc/<pid>/stat, parsed as text) at the
// same rate over the same pids, both after a warm-up. CPU is this process's own
// (process.cpuUsage); what it spends with nothing to do (idle windows of the same
// length, each after 5 s of quiet, before, between and after the measured ones) is
// measured too, and the smaller neighbour subtracted, so `pct` is the sampling's own. Every process started
// during the herd windows is counted at the lowest level Node has (the process_wrap and
// spawn_sync bindings).

import { readFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import winston from 'winston';
import { parseStat } from '../src/proc';
import { Sampler } from '../src/sampler';
import { Timeline } from '../src/timeline';
import { ownCpuMs, round, sleep } from './common';

/** `pct`: CPU of the sampling as % of one core, net of `idlePct` (this process idle: the smaller of the idle windows around it); per sample in ms, net too. */
export interface Cost { pct: number; grossPct: number; idlePct: number; msPerSample: number; samples: number }

export interface SamplerCost {
  nodes: number;
  windowS: number;
  herd: Cost;
  herdWithTimeline: Cost;
  readFileSync: Cost;
  /** The idle windows, in order (before the readFileSync window, between the measured ones, after the last). */
  idlePct: number[];
  /** The longest the event loop waited while herd's sampler ran (a 1 ms timer's worst delay). */
  loopMaxMs: number;
  /** Processes started while the sampler ran (must be 0). */
  spawned: number;
}

/** How long the event-loop delay is watched after a measured window (a few samples). */
const LOOP_WINDOW_MS = 4000;

/** Quiet time before an idle window. */
const SETTLE_MS = 5000;

/** CPU this process used in `windowS` seconds, as % of one core. */
async function cpuPctOver(windowS: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  const c0 = ownCpuMs();
  await sleep(windowS * 1000);
  return ((ownCpuMs() - c0) / 1000 / (Number(process.hrtime.bigint() - t0) / 1e9)) * 100;
}

/** This process with nothing to do, after what ran before (a warm-up, the last window) has settled. */
async function idleWindow(windowS: number): Promise<number> {
  await sleep(SETTLE_MS);
  return cpuPctOver(windowS);
}

/**
 * The CPU of what runs between `start` and `stop` (ticking `ticks`) for `windowS` seconds,
 * as % of a core and ms per tick; net of `idlePct` once the idle windows around it are known.
 */
async function cpuOf(windowS: number, ticks: () => number, start: () => Promise<void> | void, stop: () => Promise<void> | void) {
  await start();
  const n0 = ticks();
  const grossPct = await cpuPctOver(windowS);
  const samples = ticks() - n0;
  await stop();
  return (idlePct: number): Cost => {
    const pct = Math.max(0, grossPct - idlePct);
    return { pct: round(pct, 3), grossPct: round(grossPct, 3), idlePct: round(idlePct, 3), msPerSample: round((pct * 10 * windowS) / Math.max(1, samples), 3), samples };
  };
}

/**
 * Records every process started in this process (the options of each) until `restore()`:
 * spawn, exec, execFile and fork go through process_wrap; every *Sync variant through spawn_sync.
 */
export function watchSpawns(): { started: unknown[]; restore: () => void } {
  const binding = (process as unknown as { binding: (name: string) => Record<string, unknown> }).binding;
  const proto = (binding('process_wrap').Process as { prototype: { spawn: (...a: unknown[]) => unknown } }).prototype;
  const sync = binding('spawn_sync') as { spawn: (...a: unknown[]) => unknown };
  const [origSpawn, origSync] = [proto.spawn, sync.spawn];
  const started: unknown[] = [];
  proto.spawn = function (this: unknown, ...a: unknown[]) {
    started.push(a[0]);
    return origSpawn.apply(this, a);
  };
  sync.spawn = (...a: unknown[]) => {
    started.push(a[0]);
    return origSync(...a);
  };
  const restore = () => {
    proto.spawn = origSpawn;
    sync.spawn = origSync;
  };
  return { started, restore };
}

export async function samplerCost(pids: number[], windowS: number, logDir: string): Promise<SamplerCost> {
  const logger = winston.createLogger({ silent: true });
  const nodes = pids.map((pid, index) => ({ pid, index }));
  const live = () => ({ generation: 1, nodes });

  // The previous sampler's per-node read, at the same rate.
  let baseTicks = 0;
  let timer: NodeJS.Timeout | undefined;
  const baseline = () => {
    for (const { pid } of nodes) parseStat(pid, readFileSync(`/proc/${pid}/stat`, 'latin1'));
    baseTicks++;
  };
  for (let i = 0; i < 30; i++) baseline(); // warm-up: JIT, dentry cache
  // Idle windows before, between and after the measured ones; each measurement is net of
  // the smaller of its two neighbours (the larger would flatter it).
  const idle = [await idleWindow(windowS)];
  const readFileSyncCost = await cpuOf(windowS, () => baseTicks, () => void (timer = setInterval(baseline, 1000)), () => clearInterval(timer!));
  idle.push(await idleWindow(windowS));

  // Warm-up: 30 samples in 1.5 s, so that what is measured is the optimised code of a manager that has run a while.
  const warm = new Sampler({ intervalMs: 50, logFile: null, nodes: live, logger });
  await warm.start();
  await sleep(1500);
  await warm.stop();

  const run = async (withTimeline: boolean) => {
    const sampler = new Sampler({ intervalMs: 1000, logFile: null, nodes: live, logger });
    let samples = 0;
    sampler.on('sample', () => samples++);
    if (withTimeline) {
      const timeline = new Timeline({ logDir, logger, manager: () => ({ version: 'bench', hostname: 'bench', pid: process.pid, address: '' }), intervalMs: 1000, current: () => ({ generation: 1, target: nodes.length }) });
      sampler.on('sample', (event, mono) => timeline.sample(event, mono));
    }
    let spawned = 0;
    let watch: ReturnType<typeof watchSpawns> | undefined;
    // How long a sample holds the event loop: the longest delay of a 1 ms timer, over a few
    // samples after the CPU window (the timer's own wake-ups would count in that window).
    const loop = monitorEventLoopDelay({ resolution: 1 });
    const cost = await cpuOf(
      windowS,
      () => samples,
      async () => {
        await sampler.start(); // opens the descriptors; getconf runs once per process, before counting
        await sleep(1500); // one sample in, so the window is steady state
        watch = watchSpawns();
      },
      async () => {
        loop.enable();
        await sleep(LOOP_WINDOW_MS);
        loop.disable();
        watch?.restore();
        spawned = watch?.started.length ?? 0;
        await sampler.stop();
      },
    );
    return { cost, spawned, loopMaxMs: round(loop.max / 1e6, 2) };
  };
  const herd = await run(false);
  idle.push(await idleWindow(windowS));
  const withTimeline = await run(true);
  idle.push(await idleWindow(windowS));
  const net = (i: number) => Math.min(idle[i], idle[i + 1]);
  return {
    nodes: pids.length,
    windowS,
    herd: herd.cost(net(1)),
    herdWithTimeline: withTimeline.cost(net(2)),
    readFileSync: readFileSyncCost(net(0)),
    idlePct: idle.map((x) => round(x, 3)),
    loopMaxMs: herd.loopMaxMs,
    spawned: herd.spawned + withTimeline.spawned,
  };
}
