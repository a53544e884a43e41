// `npm run bench`: how fast is herd, measured against a baseline run in this same process.
//
// This is a report, not a test: nothing here asserts on wall-clock time. It starts its own
// manager subprocess(es) on a free port, talks to them with HerdClient, and compares:
//
//   1. spawn N lightweight nodes (`generate N`, wait "spawned") vs. a bare child_process.spawn loop
//   2. reset those N nodes (`reset` reply)                    vs. a bare kill(-pid, SIGTERM) loop
//   3. generate 50 real example nodes, wait "connected" (absolute time, per node)
//   4. `status` round trips idle with 200 nodes (baseline: `ping`), and during a `generate 500`
//   5. manager RSS with 0 / 200 nodes, and its idle CPU with 200 nodes (baseline: 0 nodes)
//   6. node output: the periodic size check of 1000 files, and a check that rotates 10 MiB
//      (in this process, with the manager's NodeOutput; no baseline)
//   7. the stats sampler over 1000 live processes at 1 Hz: its CPU (in this process, with the
//      manager's Sampler and Timeline) vs. the previous readFileSync read; and the manager's idle
//      CPU with 1000 nodes (base: 0 nodes)
//
// A lightweight node is a tiny shell script in a private tmp dir that execs `sleep` through a
// symlink in that same dir, so every process we start carries the tmp path in its command line
// and `pgrep -f <tmp>` finds any leftover. Prints a table; writes every figure (raw samples too)
// to bench/results/latest.json.

import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HerdClient } from '../src/client';
import { createLogger } from '../src/logger';
import { NodeOutput } from '../src/nodeoutput';
import { samplerCost } from './sampler';
import { CLI, clkTck, cpuTicks, EXAMPLE_NODE, machine, Manager, now, RESULTS_DIR, round, sleep, startManager, stopManager, vmRssKiB } from './common';

/** The two arguments the manager appends (interface host:port, machine ip), as it computes them here. */
const NODE_TAIL = ['127.0.0.1:7071', '127.0.0.1'];

const CONFIG = {
  spawnSizes: [200, 500],
  spawnReps: { 200: 5, 500: 5 } as Record<number, number>,
  /** N=500 is skipped if the bench has already run this long. */
  largeBudgetMs: 90_000,
  warmupN: 20,
  realN: 50,
  realReps: 3,
  statusIdleRequests: 500,
  statusIdleNodes: 200,
  statusDuringN: 500,
  statusDuringReps: 3,
  cpuWindowS: 5,
  statsIntervalMs: 1000,
  outputFiles: 1000,
  outputChecks: 20,
  outputRotateMiB: 10,
  samplerNodes: 1000,
  samplerWindowS: 10,
};

// ---- small utilities ----------------------------------------------------------

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  // Nearest rank.
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

interface Summary { n: number; median: number; min: number; max: number; p50: number; p99: number; mean: number }
function summarize(xs: number[]): Summary {
  const s = [...xs].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / (s.length || 1);
  return { n: s.length, median: round(quantile(s, 0.5), 3), min: round(s[0] ?? NaN, 3), max: round(s[s.length - 1] ?? NaN, 3), p50: round(quantile(s, 0.5), 3), p99: round(quantile(s, 0.99), 3), mean: round(mean, 3) };
}

function log(msg: string): void {
  process.stderr.write(`[bench +${((now() - T0) / 1000).toFixed(1)}s] ${msg}\n`);
}
const T0 = now();

const ticksMs = (ticks: number) => round((ticks / clkTck()) * 1000, 1);

/** Pids whose command line contains `needle`, via pgrep -f (run without a shell, so it doesn't match itself). */
function pgrep(needle: string): number[] {
  try {
    return execFileSync('pgrep', ['-f', needle], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
  } catch (err) {
    if ((err as { status?: number }).status === 1) return [];
    throw err;
  }
}

// ---- the manager subprocess -------------------------------------------------------

// ---- the bare baseline ------------------------------------------------------------

interface BareChild { proc: ChildProcess; spawned: Promise<void>; exited: Promise<void> }
const bareLive = new Set<ChildProcess>();

/**
 * `plain`: exactly what the brief asks (detached, stdio ignore, same argv).
 * `launcherLike`: also what src/launcher.ts does per child (a log file opened for stdout/stderr,
 * an env copy with HERD_INDEX/HERD_GENERATION): a diagnostic, to tell OS spawn cost from herd's own.
 */
type BareVariant = 'plain' | 'launcherLike';

function bareSpawnOne(command: string, variant: BareVariant, index: number, logDir: string): BareChild {
  let proc: ChildProcess;
  if (variant === 'plain') {
    proc = spawn(command, NODE_TAIL, { detached: true, stdio: 'ignore' });
  } else {
    const fd = openSync(path.join(logDir, `node-${index}.log`), 'a');
    try {
      proc = spawn(command, NODE_TAIL, { detached: true, stdio: ['ignore', fd, fd], env: { ...process.env, HERD_INDEX: String(index), HERD_GENERATION: '1' } });
    } finally {
      closeSync(fd);
    }
  }
  bareLive.add(proc);
  const spawned = new Promise<void>((resolve, reject) => {
    proc.once('spawn', () => resolve());
    proc.once('error', reject);
  });
  const exited = new Promise<void>((resolve) =>
    proc.once('exit', () => {
      bareLive.delete(proc);
      resolve();
    }),
  );
  return { proc, spawned, exited };
}

async function bareSpawn(command: string, n: number, variant: BareVariant, logDir: string): Promise<{ ms: number; children: BareChild[] }> {
  mkdirSync(logDir, { recursive: true });
  const t0 = now();
  const children: BareChild[] = [];
  for (let i = 0; i < n; i++) children.push(bareSpawnOne(command, variant, i, logDir));
  await Promise.all(children.map((c) => c.spawned));
  return { ms: now() - t0, children };
}

async function bareReset(children: BareChild[]): Promise<number> {
  const t0 = now();
  for (const c of children) {
    try {
      process.kill(-c.proc.pid!, 'SIGTERM');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }
  await Promise.all(children.map((c) => c.exited));
  return now() - t0;
}

// ---- herd operations --------------------------------------------------------------

async function herdSpawn(client: HerdClient, n: number): Promise<number> {
  const t0 = now();
  const r = await client.generate(n, { wait: 'spawned' });
  const ms = now() - t0;
  if (r.nodes.length !== n) throw new Error(`generate ${n} returned ${r.nodes.length} nodes`);
  return ms;
}

async function herdReset(client: HerdClient, expect: number): Promise<number> {
  const t0 = now();
  const r = await client.reset();
  const ms = now() - t0;
  if (r.killed !== expect) throw new Error(`reset killed ${r.killed}, expected ${expect}`);
  return ms;
}

async function latencies(fn: () => Promise<unknown>, count: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const t0 = now();
    await fn();
    out.push(now() - t0);
  }
  return out;
}

/** Manager CPU (utime+stime) as % of one core: per 1 s sample, and over the whole window. */
async function cpuWindow(pid: number, seconds: number): Promise<{ meanPct: number; perSecondPct: number[] }> {
  const hz = clkTck();
  const start = { ticks: cpuTicks(pid), t: now() };
  let prev = start;
  const perSecondPct: number[] = [];
  for (let i = 0; i < seconds; i++) {
    await sleep(1000);
    const cur = { ticks: cpuTicks(pid), t: now() };
    perSecondPct.push(round(((cur.ticks - prev.ticks) / hz / ((cur.t - prev.t) / 1000)) * 100, 2));
    prev = cur;
  }
  const meanPct = round(((prev.ticks - start.ticks) / hz / ((prev.t - start.t) / 1000)) * 100, 2);
  return { meanPct, perSecondPct };
}

// ---- cleanup ------------------------------------------------------------------------

const managers = new Set<Manager>();
const clients = new Set<HerdClient>();
let tmpRoot = '';
let cleanedUp: Promise<CleanupReport> | null = null;

interface CleanupReport { managerExits: unknown[]; bareKilled: number; leftoverBeforeFallback: number[]; leftoverAfter: number[]; tmpRemoved: boolean }

function cleanup(keepTmp: boolean): Promise<CleanupReport> {
  cleanedUp ??= (async () => {
    let bareKilled = 0;
    for (const p of bareLive) {
      try {
        process.kill(-p.pid!, 'SIGKILL');
        bareKilled++;
      } catch {
        /* already gone */
      }
    }
    await Promise.all([...clients].map((c) => c.close().catch(() => undefined)));
    const managerExits = await Promise.all([...managers].map((m) => stopManager(m)));
    let leftoverBeforeFallback: number[] = [];
    let leftoverAfter: number[] = [];
    if (tmpRoot) {
      // Reaping is asynchronous to kill(2) by a hair: give stragglers a moment.
      for (let i = 0; i < 20; i++) {
        leftoverBeforeFallback = pgrep(tmpRoot);
        if (leftoverBeforeFallback.length === 0) break;
        await sleep(100);
      }
      for (const pid of leftoverBeforeFallback) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      if (leftoverBeforeFallback.length > 0) await sleep(200);
      leftoverAfter = pgrep(tmpRoot);
    }
    let tmpRemoved = false;
    if (tmpRoot && !keepTmp && leftoverAfter.length === 0) {
      rmSync(tmpRoot, { recursive: true, force: true });
      tmpRemoved = true;
    }
    return { managerExits, bareKilled, leftoverBeforeFallback, leftoverAfter, tmpRemoved };
  })();
  return cleanedUp;
}

process.on('SIGINT', () => {
  log('SIGINT: cleaning up');
  void cleanup(true).then((r) => {
    log(`cleanup: ${JSON.stringify(r)}; tmp dir ${tmpRoot}`);
    process.exit(130);
  });
});

// ---- the bench --------------------------------------------------------------------

interface Row { measure: string; herd: string; baseline: string; ratio: string }

async function main(): Promise<void> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first`);
  const info = machine();
  process.stdout.write(`machine: ${info.nproc} cpu(s), ${info.cpuModel}, node ${info.node}, linux ${info.kernel}, ${info.memTotalMiB} MiB\n`);

  tmpRoot = mkdtempSync(path.join(os.tmpdir(), 'herd-bench-'));
  const sleepBin = ['/bin/sleep', '/usr/bin/sleep'].find((p) => existsSync(p));
  if (!sleepBin) throw new Error('no sleep binary in /bin or /usr/bin');
  const sleepLink = path.join(tmpRoot, 'sleep');
  symlinkSync(sleepBin, sleepLink);
  const lightNode = path.join(tmpRoot, 'light-node.sh');
  // The manager appends two args; exec drops them, so sleep never sees them.
  writeFileSync(lightNode, `#!/bin/sh\nexec ${sleepLink} 1000\n`);
  chmodSync(lightNode, 0o755);
  log(`tmp dir ${tmpRoot}`);

  const results: Record<string, unknown> = {};
  const rows: Row[] = [];
  const fmt = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');
  const medMin = (s: Summary, d = 1) => `${fmt(s.median, d)} (${fmt(s.min, d)})`;
  const ratio = (a: number, b: number) => (b > 0 && Number.isFinite(a) ? `${(a / b).toFixed(2)}x` : '-');

  // -- manager A: lightweight nodes ---------------------------------------------------
  const mgrA = await startManager(['--stats-interval-ms', String(CONFIG.statsIntervalMs), '--node-command', lightNode], path.join(tmpRoot, 'logs-a'));
  managers.add(mgrA);
  log(`manager A pid ${mgrA.pid} at ${mgrA.address}`);
  const client = await HerdClient.connect(mgrA.address);
  clients.add(client);
  const probe = await HerdClient.connect(mgrA.address);
  clients.add(probe);

  // 5a. RSS and idle CPU with 0 nodes (fresh manager; let the sampler take a couple of samples).
  await sleep(1500);
  const rss0Fresh = vmRssKiB(mgrA.pid);
  log(`idle CPU, 0 nodes, ${CONFIG.cpuWindowS} s`);
  const cpu0 = await cpuWindow(mgrA.pid, CONFIG.cpuWindowS);

  // 4a + 5b. With 200 nodes running (first generate of a fresh manager, so the RSS is not a
  // high-water mark left by the N=500 rounds): RSS, status vs ping latency, idle CPU.
  await herdSpawn(client, CONFIG.statusIdleNodes);
  await sleep(1500);
  const rss200 = vmRssKiB(mgrA.pid);
  log(`status/ping latency idle, ${CONFIG.statusIdleNodes} nodes`);
  await latencies(() => probe.status(), 50); // warm-up
  const statusIdle = summarize(await latencies(() => probe.status(), CONFIG.statusIdleRequests));
  const pingIdle = summarize(await latencies(() => probe.ping(), CONFIG.statusIdleRequests));
  const statusBytes = Buffer.byteLength(JSON.stringify(await probe.status()));
  log(`idle CPU, ${CONFIG.statusIdleNodes} nodes, ${CONFIG.cpuWindowS} s`);
  const cpu200 = await cpuWindow(mgrA.pid, CONFIG.cpuWindowS);
  const rss200After = vmRssKiB(mgrA.pid);
  await herdReset(client, CONFIG.statusIdleNodes);
  await sleep(1000);
  const rss0AfterReset = vmRssKiB(mgrA.pid);

  // Warm-up: JIT, the xstate machinery, fs caches, for both sides.
  for (let i = 0; i < 2; i++) {
    await herdSpawn(client, CONFIG.warmupN);
    await herdReset(client, CONFIG.warmupN);
    const b = await bareSpawn(lightNode, CONFIG.warmupN, 'plain', path.join(tmpRoot, 'bare-logs'));
    await bareReset(b.children);
    const b2 = await bareSpawn(lightNode, CONFIG.warmupN, 'launcherLike', path.join(tmpRoot, 'bare-logs'));
    await bareReset(b2.children);
  }

  // 1 + 2. spawn and reset, herd vs bare, interleaved per repetition.
  const spawnResults: Record<string, unknown> = {};
  for (const n of CONFIG.spawnSizes) {
    if (n > 200 && now() - T0 > CONFIG.largeBudgetMs) {
      log(`skipping N=${n}: already ${Math.round((now() - T0) / 1000)} s in`);
      continue;
    }
    const reps = CONFIG.spawnReps[n] ?? 3;
    const s = { herdSpawn: [] as number[], herdReset: [] as number[], bareSpawn: [] as number[], bareReset: [] as number[], likeSpawn: [] as number[], likeReset: [] as number[] };
    // CPU burnt by the spawning process itself (manager, or this bench for the bare loops), in ms:
    // less sensitive to scheduling noise than wall time on a small box.
    const cpu = { herdSpawn: [] as number[], herdReset: [] as number[], bareSpawn: [] as number[], bareReset: [] as number[], likeSpawn: [] as number[] };
    for (let r = 0; r < reps; r++) {
      log(`N=${n} rep ${r + 1}/${reps}`);
      let c0 = cpuTicks(mgrA.pid);
      s.herdSpawn.push(await herdSpawn(client, n));
      let c1 = cpuTicks(mgrA.pid);
      s.herdReset.push(await herdReset(client, n));
      cpu.herdSpawn.push(ticksMs(c1 - c0));
      cpu.herdReset.push(ticksMs(cpuTicks(mgrA.pid) - c1));
      c0 = cpuTicks(process.pid);
      const b = await bareSpawn(lightNode, n, 'plain', path.join(tmpRoot, 'bare-logs'));
      c1 = cpuTicks(process.pid);
      s.bareSpawn.push(b.ms);
      s.bareReset.push(await bareReset(b.children));
      cpu.bareSpawn.push(ticksMs(c1 - c0));
      cpu.bareReset.push(ticksMs(cpuTicks(process.pid) - c1));
      // Fresh log files each time, as the manager creates a new gen-K directory per generation.
      c0 = cpuTicks(process.pid);
      const l = await bareSpawn(lightNode, n, 'launcherLike', path.join(tmpRoot, 'bare-logs', `n${n}-rep${r}`));
      cpu.likeSpawn.push(ticksMs(cpuTicks(process.pid) - c0));
      s.likeSpawn.push(l.ms);
      s.likeReset.push(await bareReset(l.children));
    }
    const sum = Object.fromEntries(Object.entries(s).map(([k, v]) => [k, { ...summarize(v), samplesMs: v.map((x) => round(x, 2)) }])) as Record<keyof typeof s, Summary & { samplesMs: number[] }>;
    const cpuSum = Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, { ...summarize(v), samplesMs: v }])) as Record<keyof typeof cpu, Summary & { samplesMs: number[] }>;
    spawnResults[`n${n}`] = { n, reps, ...sum, spawnerCpuMs: cpuSum, ratioSpawnMedian: round(sum.herdSpawn.median / sum.bareSpawn.median, 3), ratioResetMedian: round(sum.herdReset.median / sum.bareReset.median, 3) };
    rows.push({ measure: `spawn N=${n}, ms med (min)`, herd: medMin(sum.herdSpawn), baseline: medMin(sum.bareSpawn), ratio: ratio(sum.herdSpawn.median, sum.bareSpawn.median) });
    rows.push({ measure: `  per node, ms`, herd: fmt(sum.herdSpawn.median / n, 2), baseline: fmt(sum.bareSpawn.median / n, 2), ratio: '' });
    rows.push({ measure: `  spawner CPU per node, ms (manager vs bench)`, herd: fmt(cpuSum.herdSpawn.median / n, 2), baseline: fmt(cpuSum.bareSpawn.median / n, 2), ratio: ratio(cpuSum.herdSpawn.median, cpuSum.bareSpawn.median) });
    rows.push({ measure: `  vs launcher-like bare (+new log file, env)`, herd: medMin(sum.herdSpawn), baseline: medMin(sum.likeSpawn), ratio: ratio(sum.herdSpawn.median, sum.likeSpawn.median) });
    rows.push({ measure: `    its CPU per node, ms`, herd: fmt(cpuSum.herdSpawn.median / n, 2), baseline: fmt(cpuSum.likeSpawn.median / n, 2), ratio: ratio(cpuSum.herdSpawn.median, cpuSum.likeSpawn.median) });
    rows.push({ measure: `reset N=${n}, ms med (min)`, herd: medMin(sum.herdReset), baseline: medMin(sum.bareReset), ratio: ratio(sum.herdReset.median, sum.bareReset.median) });
    rows.push({ measure: `  per node, ms`, herd: fmt(sum.herdReset.median / n, 2), baseline: fmt(sum.bareReset.median / n, 2), ratio: '' });
    rows.push({ measure: `  killer CPU per node, ms (manager vs bench)`, herd: fmt(cpuSum.herdReset.median / n, 2), baseline: fmt(cpuSum.bareReset.median / n, 2), ratio: ratio(cpuSum.herdReset.median, cpuSum.bareReset.median) });
  }
  results.spawnReset = spawnResults;

  // 4b. status while a generate of 500 is spawning.
  const during: number[][] = [];
  const duringGen: number[] = [];
  for (let r = 0; r < CONFIG.statusDuringReps; r++) {
    log(`status during generate ${CONFIG.statusDuringN}, rep ${r + 1}/${CONFIG.statusDuringReps}`);
    let done = false;
    const t0 = now();
    const gen = client.generate(CONFIG.statusDuringN, { wait: 'spawned' }).then(
      (res) => {
        done = true;
        duringGen.push(now() - t0);
        if (res.nodes.length !== CONFIG.statusDuringN) throw new Error(`generate returned ${res.nodes.length} nodes`);
      },
      (err) => {
        done = true;
        throw err;
      },
    );
    const lat: number[] = [];
    while (!done) {
      const s0 = now();
      await probe.status();
      lat.push(now() - s0);
    }
    await gen;
    during.push(lat);
    await herdReset(client, CONFIG.statusDuringN);
  }
  const statusDuring = summarize(during.flat());
  const rss0After = vmRssKiB(mgrA.pid);

  results.status = {
    idleNodes: CONFIG.statusIdleNodes,
    statusIdleMs: statusIdle,
    pingIdleMs: pingIdle,
    statusReplyJsonBytes: statusBytes,
    duringGenerate: { n: CONFIG.statusDuringN, generateMs: summarize(duringGen), statusMs: statusDuring, samplesPerRep: during.map((l) => l.length) },
  };
  results.memory = { rssKiB0Fresh: rss0Fresh, rssKiB200: rss200, rssKiB200AfterCpuWindow: rss200After, rssKiB0AfterReset200: rss0AfterReset, rssKiB0AfterRun: rss0After, kiBPerNode: round((rss200 - rss0Fresh) / CONFIG.statusIdleNodes, 1) };
  results.cpu = { clkTck: clkTck(), idle0Nodes: cpu0, idle200Nodes: cpu200, statsIntervalMs: CONFIG.statsIntervalMs };

  rows.push({ measure: `status p50 idle, ${CONFIG.statusIdleNodes} nodes (base: ping), ms`, herd: fmt(statusIdle.p50, 3), baseline: fmt(pingIdle.p50, 3), ratio: ratio(statusIdle.p50, pingIdle.p50) });
  rows.push({ measure: `status p99 idle, ${CONFIG.statusIdleNodes} nodes (base: ping), ms`, herd: fmt(statusIdle.p99, 3), baseline: fmt(pingIdle.p99, 3), ratio: ratio(statusIdle.p99, pingIdle.p99) });
  rows.push({ measure: `status p50 during generate ${CONFIG.statusDuringN} (base: idle), ms`, herd: fmt(statusDuring.p50, 3), baseline: fmt(statusIdle.p50, 3), ratio: ratio(statusDuring.p50, statusIdle.p50) });
  rows.push({ measure: `status p99 during generate ${CONFIG.statusDuringN} (base: idle), ms`, herd: fmt(statusDuring.p99, 3), baseline: fmt(statusIdle.p99, 3), ratio: ratio(statusDuring.p99, statusIdle.p99) });
  rows.push({ measure: `  status max during / round trips per generate`, herd: fmt(statusDuring.max, 1), baseline: during.map((l) => l.length).join('/'), ratio: '' });
  rows.push({ measure: `  generate ${CONFIG.statusDuringN} under status load, ms med (min)`, herd: medMin(summarize(duringGen)), baseline: '', ratio: '' });
  rows.push({ measure: `manager RSS, MiB: 200 nodes (base: 0 nodes)`, herd: fmt(rss200 / 1024), baseline: fmt(rss0Fresh / 1024), ratio: ratio(rss200, rss0Fresh) });
  rows.push({ measure: `  RSS 0 nodes after all rounds (high-water), MiB`, herd: fmt(rss0After / 1024), baseline: '', ratio: '' });
  rows.push({ measure: `manager CPU idle 5 s, % core: 200 (base: 0 nodes)`, herd: fmt(cpu200.meanPct, 2), baseline: fmt(cpu0.meanPct, 2), ratio: ratio(cpu200.meanPct, cpu0.meanPct) });

  // 7b. The manager's idle CPU with 1000 nodes: sampling, the timeline, node output checks, its event loop.
  log(`idle CPU, ${CONFIG.samplerNodes} nodes, ${CONFIG.samplerWindowS} s`);
  await herdSpawn(client, CONFIG.samplerNodes);
  await sleep(2000);
  const cpu1000 = await cpuWindow(mgrA.pid, CONFIG.samplerWindowS);
  await herdReset(client, CONFIG.samplerNodes);
  results.cpu = { ...(results.cpu as object), idle1000Nodes: cpu1000 };
  rows.push({ measure: `manager CPU idle ${CONFIG.samplerWindowS} s, % core: ${CONFIG.samplerNodes} (base: 0 nodes)`, herd: fmt(cpu1000.meanPct, 2), baseline: fmt(cpu0.meanPct, 2), ratio: ratio(cpu1000.meanPct, cpu0.meanPct) });

  await Promise.all([client.close(), probe.close()]);
  clients.delete(client);
  clients.delete(probe);
  const stopA = await stopManager(mgrA);
  managers.delete(mgrA);
  log(`manager A stopped: ${JSON.stringify(stopA)}`);

  // 3. Real example nodes (default --node-command), wait "connected". A second manager, since the
  // node command is fixed per manager; the --node-arg tag only puts the tmp path into the nodes'
  // command lines for the leftover check (the example node reads just its last two args).
  const mgrB = await startManager(['--stats-interval-ms', String(CONFIG.statsIntervalMs), `--node-arg=--bench-tag=${tmpRoot}`], path.join(tmpRoot, 'logs-b'));
  managers.add(mgrB);
  log(`manager B (example node) pid ${mgrB.pid} at ${mgrB.address}`);
  const clientB = await HerdClient.connect(mgrB.address);
  clients.add(clientB);
  await sleep(500);
  const realConnect: number[] = [];
  const realReset: number[] = [];
  for (let r = 0; r < CONFIG.realReps; r++) {
    log(`example nodes: generate ${CONFIG.realN} wait connected, rep ${r + 1}/${CONFIG.realReps}`);
    const t0 = now();
    const res = await clientB.generate(CONFIG.realN, { wait: 'connected', timeoutMs: 60_000 });
    realConnect.push(now() - t0);
    if (res.nodes.length !== CONFIG.realN) throw new Error(`generate returned ${res.nodes.length} nodes`);
    realReset.push(await herdReset(clientB, CONFIG.realN));
  }
  // Baseline: the same 50 example-node processes started bare with no HERD_MANAGER in their
  // environment: each boots, loads its modules, and exits at once (status 2). Time until all have
  // exited is the floor that process start-up alone puts under "all connected".
  const bootEnv = { ...process.env };
  delete bootEnv.HERD_MANAGER;
  const realBoot: number[] = [];
  for (let r = 0; r < CONFIG.realReps; r++) {
    log(`example nodes: bare boot-to-exit of ${CONFIG.realN}, rep ${r + 1}/${CONFIG.realReps}`);
    const t0 = now();
    const children: ChildProcess[] = [];
    const exits: Promise<void>[] = [];
    for (let i = 0; i < CONFIG.realN; i++) {
      const c = spawn(EXAMPLE_NODE, [`--bench-tag=${tmpRoot}`, ...NODE_TAIL], { detached: true, stdio: 'ignore', env: bootEnv });
      bareLive.add(c);
      children.push(c);
      exits.push(
        new Promise<void>((resolve, reject) => {
          c.once('error', reject);
          c.once('exit', () => {
            bareLive.delete(c);
            resolve();
          });
        }),
      );
    }
    await Promise.all(exits);
    realBoot.push(now() - t0);
    const bad = children.filter((c) => c.exitCode !== 2);
    if (bad.length > 0) throw new Error(`${bad.length} bare example nodes exited with something other than 2 (e.g. ${bad[0].exitCode}/${bad[0].signalCode})`);
  }
  const bootS = summarize(realBoot);
  const realC = summarize(realConnect);
  const realR = summarize(realReset);
  results.exampleNodes = { n: CONFIG.realN, connectMs: { ...realC, samplesMs: realConnect.map((x) => round(x, 1)) }, perNodeMsMedian: round(realC.median / CONFIG.realN, 2), resetMs: realR, bareBootToExitMs: { ...bootS, samplesMs: realBoot.map((x) => round(x, 1)) } };
  rows.push({ measure: `generate ${CONFIG.realN} example nodes, connected, ms`, herd: medMin(realC, 0), baseline: medMin(bootS, 0), ratio: ratio(realC.median, bootS.median) });
  rows.push({ measure: `  per node, ms`, herd: fmt(realC.median / CONFIG.realN, 1), baseline: fmt(bootS.median / CONFIG.realN, 1), ratio: '' });
  rows.push({ measure: `  reset ${CONFIG.realN} example nodes, ms`, herd: medMin(realR, 0), baseline: '', ratio: '' });
  await clientB.close();
  clients.delete(clientB);
  const stopB = await stopManager(mgrB);
  managers.delete(mgrB);
  log(`manager B stopped: ${JSON.stringify(stopB)}`);

  // ---- node output: the periodic size check and one rotation, in this process (the manager's code) ----
  log(`node output: size check of ${CONFIG.outputFiles} files, ${CONFIG.outputChecks} rounds; one ${CONFIG.outputRotateMiB} MiB rotation`);
  const nodeOutput = new NodeOutput({ logDir: path.join(tmpRoot, 'output'), maxBytes: CONFIG.outputRotateMiB * 1024 * 1024, logger: createLogger({ console: false }) });
  const outputFiles = Array.from({ length: CONFIG.outputFiles }, (_, i) => {
    const { fd, output } = nodeOutput.open(1, i);
    closeSync(fd);
    nodeOutput.started(output, process.pid);
    return path.join(tmpRoot, 'output', 'nodes', 'gen-1', `node-${i}.log`);
  });
  const check = () => (nodeOutput as unknown as { check(): Promise<void> }).check();
  const timed = async () => {
    const c0 = process.cpuUsage();
    const t0 = now();
    await check();
    const cpu = process.cpuUsage(c0);
    return { wall: now() - t0, cpu: (cpu.user + cpu.system) / 1000 };
  };
  const checks: { wall: number; cpu: number }[] = [];
  for (let r = 0; r < CONFIG.outputChecks; r++) checks.push(await timed());
  writeFileSync(outputFiles[0], Buffer.alloc(CONFIG.outputRotateMiB * 1024 * 1024 + 1, 0x61));
  const rotation = await timed();
  const checkCpu = summarize(checks.map((c) => c.cpu));
  const checkWall = summarize(checks.map((c) => c.wall));
  results.nodeOutput = { files: CONFIG.outputFiles, checkCpuMs: checkCpu, checkWallMs: checkWall, rotateMs: rotation };
  rows.push({ measure: `node output size check, ${CONFIG.outputFiles} files: CPU ms med (max)`, herd: `${fmt(checkCpu.median, 2)} (${fmt(checkCpu.max, 2)})`, baseline: '', ratio: '' });
  rows.push({ measure: `  wall ms med (max), yielding every 5 ms`, herd: `${fmt(checkWall.median, 2)} (${fmt(checkWall.max, 2)})`, baseline: '', ratio: '' });
  rows.push({ measure: `  check with one ${CONFIG.outputRotateMiB} MiB rotation: wall (CPU) ms`, herd: `${fmt(rotation.wall, 1)} (${fmt(rotation.cpu, 1)})`, baseline: '', ratio: '' });

  // ---- 7a. the sampler's own cost, in this process, over 1000 live processes ----
  log(`sampler: ${CONFIG.samplerNodes} sleepers, ${CONFIG.samplerWindowS} s windows at 1 Hz (readFileSync, herd, herd + timeline)`);
  const sleepers = await bareSpawn(lightNode, CONFIG.samplerNodes, 'plain', path.join(tmpRoot, 'bare-logs'));
  const sampler = await samplerCost(sleepers.children.map((c) => c.proc.pid!), CONFIG.samplerWindowS, path.join(tmpRoot, 'sampler-logs'));
  await bareReset(sleepers.children);
  results.sampler = sampler;
  rows.push({ measure: `sampler CPU, ${sampler.nodes} nodes at 1 Hz, % core (base: readFileSync)`, herd: fmt(sampler.herd.pct, 2), baseline: fmt(sampler.readFileSync.pct, 2), ratio: ratio(sampler.herd.pct, sampler.readFileSync.pct) });
  rows.push({ measure: `  per sample, CPU ms`, herd: fmt(sampler.herd.msPerSample, 2), baseline: fmt(sampler.readFileSync.msPerSample, 2), ratio: '' });
  rows.push({ measure: `  with the timeline written, % core`, herd: fmt(sampler.herdWithTimeline.pct, 2), baseline: '', ratio: '' });
  rows.push({ measure: `  processes started while sampling`, herd: String(sampler.spawned), baseline: '', ratio: '' });

  // ---- report ----
  const cleanupReport = await cleanup(false);
  const totalS = round((now() - T0) / 1000, 1);

  const header: Row = { measure: 'measure', herd: 'herd', baseline: 'baseline', ratio: 'ratio' };
  const all = [header, ...rows];
  const w = {
    measure: Math.max(...all.map((r) => r.measure.length)),
    herd: Math.max(...all.map((r) => r.herd.length)),
    baseline: Math.max(...all.map((r) => r.baseline.length)),
    ratio: Math.max(...all.map((r) => r.ratio.length)),
  };
  const line = (r: Row) => `${r.measure.padEnd(w.measure)}  ${r.herd.padStart(w.herd)}  ${r.baseline.padStart(w.baseline)}  ${r.ratio.padStart(w.ratio)}`.trimEnd();
  const out = [line(header), '-'.repeat(w.measure + w.herd + w.baseline + w.ratio + 6), ...rows.map(line)];
  process.stdout.write(`${out.join('\n')}\n`);
  process.stdout.write(
    'baselines: spawn/reset = child_process.spawn(detached, stdio ignore, same argv) / kill(-pid, SIGTERM) loops in this process;\n' +
      'example nodes = the same 50 processes started bare without HERD_MANAGER (boot, load, exit 2); ratio = herd / baseline (medians)\n',
  );
  process.stdout.write(`managers stopped (SIGTERM): A exit ${stopA.code} in ${stopA.ms} ms, B exit ${stopB.code} in ${stopB.ms} ms\n`);
  process.stdout.write(`leftover processes matching ${tmpRoot}: ${cleanupReport.leftoverBeforeFallback.length}${cleanupReport.leftoverBeforeFallback.length ? ` (${cleanupReport.leftoverBeforeFallback.join(' ')}; SIGKILLed, now ${cleanupReport.leftoverAfter.length})` : ''}\n`);
  process.stdout.write(`total ${totalS} s\n`);

  results.cleanup = { ...cleanupReport, managerA: stopA, managerB: stopB };
  const report = { bench: 'herd', date: new Date().toISOString(), machine: info, config: CONFIG, totalSeconds: totalS, results, table: rows };
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(path.join(RESULTS_DIR, 'latest.json'), `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`wrote ${path.relative(process.cwd(), path.join(RESULTS_DIR, 'latest.json')) || path.join(RESULTS_DIR, 'latest.json')}\n`);
  if (cleanupReport.leftoverAfter.length > 0) process.exitCode = 1;
}

main().catch(async (err: Error) => {
  process.stderr.write(`bench failed: ${err.stack ?? err}\n`);
  for (const m of managers) process.stderr.write(`manager ${m.pid} stderr (tail):\n${m.stderrTail().slice(-4000)}\n`);
  const r = await cleanup(true);
  process.stderr.write(`cleanup: ${JSON.stringify(r)}; tmp dir kept: ${tmpRoot}\n`);
  process.exitCode = 1;
});
