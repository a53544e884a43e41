// The sampler's own cost, for `npm run bench`: the manager's Sampler (and its timeline
// writer) run in this process at 1 Hz over live processes the bench started, against
// the previous per-node read (readFileSync of /proc/<pid>/stat, parsed as text) at the
// same rate over the same pids, both after a warm-up. CPU is this process's own
// (process.cpuUsage), which is otherwise idle during each window. Every process started
// during the herd windows is counted at the lowest level Node has (the process_wrap and
// spawn_sync bindings).

import winston from 'winston';
import { readStat } from '../src/proc';
import { Sampler } from '../src/sampler';
import { Timeline } from '../src/timeline';
import { round, sleep } from './common';

export interface SamplerCost {
  nodes: number;
  windowS: number;
  /** CPU of the sampling as % of one core, and per sample in ms. */
  herd: { pct: number; msPerSample: number; samples: number };
  herdWithTimeline: { pct: number; msPerSample: number; samples: number };
  readFileSync: { pct: number; msPerSample: number; samples: number };
  /** Processes started while the sampler ran (must be 0). */
  spawned: number;
}

/** CPU this process used while `run` went on for `windowS` seconds, as % of a core and ms per tick. */
async function cpuOf(windowS: number, ticks: () => number, start: () => Promise<void> | void, stop: () => Promise<void> | void) {
  await start();
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  const n0 = ticks();
  await sleep(windowS * 1000);
  const c = process.cpuUsage(c0);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const samples = ticks() - n0;
  await stop();
  const cpuMs = (c.user + c.system) / 1000;
  return { pct: round((cpuMs / 1000 / seconds) * 100, 3), msPerSample: round(cpuMs / Math.max(1, samples), 3), samples };
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
    for (const { pid } of nodes) readStat(pid);
    baseTicks++;
  };
  for (let i = 0; i < 30; i++) baseline(); // warm-up: JIT, dentry cache
  const readFileSyncCost = await cpuOf(windowS, () => baseTicks, () => void (timer = setInterval(baseline, 1000)), () => clearInterval(timer));

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
    const cost = await cpuOf(
      windowS,
      () => samples,
      async () => {
        await sampler.start(); // opens the descriptors; getconf runs once per process, before counting
        await sleep(1500); // one sample in, so the window is steady state
        watch = watchSpawns();
      },
      async () => {
        watch?.restore();
        spawned = watch?.started.length ?? 0;
        await sampler.stop();
      },
    );
    return { cost, spawned };
  };
  const herd = await run(false);
  const withTimeline = await run(true);
  return { nodes: pids.length, windowS, herd: herd.cost, herdWithTimeline: withTimeline.cost, readFileSync: readFileSyncCost, spawned: herd.spawned + withTimeline.spawned };
}
