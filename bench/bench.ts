// `npm run bench`: how fast is herd, measured against baselines run in this same process, and
// against pm2 and supervisor where installed. Targets (issue 5) are printed next to the figures.
//
// This is a report, not a test: nothing here asserts on wall-clock time. It starts its own
// manager subprocess(es) on a free port, talks to them with HerdClient, and compares, by section
// (`npm run bench -- --only spawn,status`; `--quick` for fewer and smaller rounds):
//
//   spawn      generate N=200 and 1000 lightweight nodes (wait "spawned") vs a bare
//              child_process.spawn loop; reset them vs a bare kill(-pid, SIGTERM)-and-wait loop;
//              the node chart's own stop and exit per node, and a bare XState machine's, in-process (bench/chart.ts)
//   status     `status` round trips idle with 1000 nodes (base: `ping`), and during a generate 1000
//   idle       manager RSS and idle CPU (1 Hz sampling) with 1000 nodes (base: 0 nodes)
//   connected  generate until every node connected: 1000 light connecting nodes (bash, one frame,
//              then sleep) and 200 example nodes, vs the same bare loop and a bare listener
//   peers      the same start/stop of N light nodes through pm2 and supervisor (skipped if absent)
//   output     node output: the periodic size check of 1000 files, one 10 MiB rotation (in-process)
//   sampler    the stats sampler over 1000 live processes at 1 Hz (in-process) vs readFileSync
//
// A lightweight node is a tiny shell script in a private tmp dir that execs `sleep` through a
// symlink in that same dir, so every process we start carries the tmp path in its command line
// and `pgrep -f <tmp>` finds any leftover. Prints a table; writes every figure (raw samples too)
// and every target check to bench/results/latest.json.

import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { HerdClient } from '../src/client';
import { decodeBody, encodeFrame, FrameDecoder } from '../src/codec';
import { createLogger } from '../src/logger';
import { NodeOutput } from '../src/nodeoutput';
import { pm2Cost, supervisorCost } from './peers';
import { nodeChartCost } from './chart';
import { samplerCost } from './sampler';
import { CLI, clkTck, cpuTicks, EXAMPLE_NODE, machine, Manager, now, ownCpuMs, RESULTS_DIR, round, sleep, startManager, stopManager, vmRssKiB } from './common';

/** The two arguments the manager appends (interface host:port, machine ip), as it computes them here. */
const NODE_TAIL = ['127.0.0.1:7071', '127.0.0.1'];

const CONFIG = {
  spawnSizes: [200, 1000],
  spawnReps: 3,
  warmupN: 20,
  /** Nodes running for the idle status latency, RSS and CPU figures. */
  idleNodes: 1000,
  statusIdleRequests: 500,
  statusDuringN: 1000,
  statusDuringReps: 2,
  cpuWindowS: 5,
  /**
   * Quiet time before the idle window: some seconds after a burst of allocation (the generate,
   * the status round trips) V8's memory reducer runs a few full collections, 80-160 ms of CPU once.
   */
  idleSettleS: 25,
  idleWindowS: 15,
  /** Windows in a row: the figure is over all of them, so a one-off burst is counted, not the whole story. */
  idleWindows: 4,
  statsIntervalMs: 1000,
  connectLightN: 1000,
  /**
   * The example node hashes 5 ms of every 200 ms once connected: 200 of them ask for 5 cores,
   * which starves a 2-core box (load 170, minutes per round); 50 ask for 1.25.
   */
  connectExampleN: 50,
  connectReps: 2,
  peerSizes: [200, 1000],
  peerReps: 2,
  outputFiles: 1000,
  outputChecks: 40,
  outputRotateMiB: 10,
  samplerNodes: 1000,
  samplerWindowS: 10,
};
/** `--quick`: one round of each, smaller N where the full size takes long. */
const QUICK: Partial<typeof CONFIG> = { spawnReps: 1, statusIdleRequests: 200, statusDuringReps: 1, idleSettleS: 8, idleWindowS: 5, connectExampleN: 20, connectReps: 1, peerSizes: [200], peerReps: 1, samplerWindowS: 5 };

const SECTIONS = ['spawn', 'status', 'idle', 'connected', 'peers', 'output', 'sampler'] as const;
type Section = (typeof SECTIONS)[number];

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

/**
 * A manager's CPU at rest: after `settleS` of quiet, `count` windows back to back, and the figure
 * is over all of them. V8's memory reducer runs a few full collections (80-160 ms of CPU) at some
 * point in the half minute after a burst of allocation (here: the status latency rounds); a window
 * may catch them, and they are counted (each window is in the JSON, and the worst is printed).
 */
async function idleCpu(pid: number, settleS: number, windowS: number, count: number): Promise<{ meanPct: number; worstPct: number; windows: Awaited<ReturnType<typeof cpuWindow>>[] }> {
  await sleep(settleS * 1000);
  const windows: Awaited<ReturnType<typeof cpuWindow>>[] = [];
  for (let i = 0; i < count; i++) windows.push(await cpuWindow(pid, windowS));
  const pcts = windows.map((w) => w.meanPct);
  return { meanPct: round(pcts.reduce((a, b) => a + b, 0) / count, 2), worstPct: Math.max(...pcts), windows };
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

/** One line of the table: `value` is herd's figure (a peer's, on the peer rows), `target` the issue's bound with ✓/✗. */
interface Row { measure: string; value: string; baseline: string; ratio: string; target: string }

/** The targets, checked on the figures they name; every check also goes into the JSON. */
const checks: { target: string; value: number; limit: number; met: boolean }[] = [];
function target(name: string, value: number, limit: number, unit: string): string {
  const met = Number.isFinite(value) && value <= limit;
  checks.push({ target: name, value: round(value, 3), limit, met });
  return `≤ ${limit}${unit} ${met ? '✓' : '✗'}`;
}

/** A bad command line: said in one line, without a stack. */
class UsageError extends Error {}

function options(argv: string[]): { only: Set<string>; quick: boolean } {
  let only = new Set(SECTIONS);
  let quick = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') quick = true;
    else if (a === '--only' || a.startsWith('--only=')) {
      const list = a === '--only' ? argv[++i] ?? '' : a.slice('--only='.length);
      const names = list.split(',').filter(Boolean);
      const bad = names.filter((s) => !(SECTIONS as readonly string[]).includes(s));
      if (bad.length > 0 || names.length === 0) throw new UsageError(`--only takes a comma-separated list of ${SECTIONS.join(', ')}; got ${JSON.stringify(list)}`);
      only = new Set(names as Section[]);
    } else throw new UsageError(`unknown option ${a}; usage: npm run bench -- [--quick] [--only ${SECTIONS.join(',')}]`);
  }
  return { only: only as Set<string>, quick };
}

/**
 * A bare stand-in for the manager's node port: answers every request frame `ok`
 * (what a node waits for after `connect`) and counts connects. The bare baseline of
 * "until connected" is a spawn loop plus this listener, in this process.
 */
async function connectCounter(): Promise<{ address: string; connected: () => number; reset: () => void; close: () => Promise<void> }> {
  let count = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    const decoder = new FrameDecoder(1024 * 1024);
    socket.on('data', (chunk) => {
      for (const frame of decoder.push(chunk)) {
        if (frame.kind !== 'frame') continue;
        const req = decodeBody(frame.body) as { id: number; cmd: string };
        if (req.cmd === 'connect') count++;
        socket.write(encodeFrame({ id: req.id, ok: true, index: 0, generation: 1 }));
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    connected: () => count,
    reset: () => {
      count = 0;
    },
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** Spawns n nodes bare (own group, stdio ignored, `env`) and waits until the counter has seen n connects. */
async function bareConnected(command: string, args: string[], n: number, counter: Awaited<ReturnType<typeof connectCounter>>, env: NodeJS.ProcessEnv): Promise<{ ms: number; children: BareChild[] }> {
  counter.reset();
  const t0 = now();
  const children: BareChild[] = [];
  for (let i = 0; i < n; i++) {
    const proc = spawn(command, args, { detached: true, stdio: 'ignore', env: { ...env, HERD_INDEX: String(i) } });
    bareLive.add(proc);
    const exited = new Promise<void>((resolve) =>
      proc.once('exit', () => {
        bareLive.delete(proc);
        resolve();
      }),
    );
    proc.once('error', () => undefined);
    children.push({ proc, spawned: Promise.resolve(), exited });
  }
  while (counter.connected() < n) {
    if (now() - t0 > 120_000) throw new Error(`bare: ${counter.connected()} of ${n} nodes connected after 120 s`);
    await sleep(2);
  }
  return { ms: now() - t0, children };
}

async function main(): Promise<void> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first`);
  const opts = options(process.argv.slice(2));
  const want = (s: Section) => opts.only.has(s);
  const cfg = opts.quick ? { ...CONFIG, ...QUICK } : CONFIG;
  const info = machine();
  process.stdout.write(`machine: ${info.nproc} cpu(s), ${info.cpuModel}, node ${info.node}, linux ${info.kernel}, ${info.memTotalMiB} MiB\n`);
  process.stdout.write(`sections: ${[...opts.only].join(', ')}${opts.quick ? ' (--quick)' : ''}\n`);

  tmpRoot = mkdtempSync(path.join(os.tmpdir(), 'herd-bench-'));
  const sleepBin = ['/bin/sleep', '/usr/bin/sleep'].find((p) => existsSync(p));
  if (!sleepBin) throw new Error('no sleep binary in /bin or /usr/bin');
  const bashBin = ['/bin/bash', '/usr/bin/bash'].find((p) => existsSync(p));
  const sleepLink = path.join(tmpRoot, 'sleep');
  symlinkSync(sleepBin, sleepLink);
  const lightNode = path.join(tmpRoot, 'light-node.sh');
  // The manager appends two args; exec drops them, so sleep never sees them.
  writeFileSync(lightNode, `#!/bin/sh\nexec ${sleepLink} 1000\n`);
  chmodSync(lightNode, 0o755);
  // A light node that connects: bash's /dev/tcp sends the one frame {id: 2, cmd: "connect", pid}
  // (26 bytes of MessagePack) to HERD_MANAGER, then execs sleep, which keeps the connection open.
  const connectNode = path.join(tmpRoot, 'connect-node.sh');
  writeFileSync(
    connectNode,
    `#!${bashBin ?? '/bin/bash'}\nexec 3<>"/dev/tcp/\${HERD_MANAGER%:*}/\${HERD_MANAGER##*:}" || exit 1\np=$$\n` +
      `printf "\\x00\\x00\\x00\\x1a\\x83\\xa2id\\x02\\xa3cmd\\xa7connect\\xa3pid\\xce$(printf '\\\\x%02x\\\\x%02x\\\\x%02x\\\\x%02x' $((p>>24&255)) $((p>>16&255)) $((p>>8&255)) $((p&255)))" >&3\n` +
      `exec ${sleepLink} 1000\n`,
  );
  chmodSync(connectNode, 0o755);
  log(`tmp dir ${tmpRoot}`);

  const results: Record<string, unknown> = { sections: [...opts.only], quick: opts.quick };
  const rows: Row[] = [];
  const fmt = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');
  const medMin = (s: Summary, d = 1) => `${fmt(s.median, d)} (${fmt(s.min, d)})`;
  const ratio = (a: number, b: number) => (b > 0 && Number.isFinite(a) ? `${(a / b).toFixed(2)}x` : '-');
  const row = (measure: string, value: string, baseline = '', r = '', tgt = '') => rows.push({ measure, value, baseline, ratio: r, target: tgt });
  const exits: Record<string, unknown> = {};
  const stop = async (name: string, m: Manager, ...cs: HerdClient[]) => {
    await Promise.all(cs.map((c) => c.close()));
    for (const c of cs) clients.delete(c);
    exits[name] = await stopManager(m);
    managers.delete(m);
    log(`manager ${name} stopped: ${JSON.stringify(exits[name])}`);
  };
  /** Bare spawn medians by N, for the peers' rows. */
  const bareSpawnMedian: Record<number, number> = {};
  const herdSpawnMedian: Record<number, number> = {};
  const herdResetMedian: Record<number, number> = {};

  /** Runs one section; a failure is reported in the table and the JSON, and the bench goes on. */
  const section = async (name: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (err) {
      log(`${name} failed: ${(err as Error).stack ?? err}`);
      results[`${name}Error`] = String((err as Error).message ?? err);
      row(`${name}: FAILED (${String((err as Error).message ?? err).slice(0, 80)})`, '');
    }
  };

  // -- manager A: lightweight nodes (spawn, status, idle) -------------------------------
  if (want('spawn') || want('status') || want('idle')) await section('spawn/status/idle', async () => {
    const mgrA = await startManager(['--stats-interval-ms', String(cfg.statsIntervalMs), '--node-command', lightNode], path.join(tmpRoot, 'logs-a'));
    managers.add(mgrA);
    log(`manager A pid ${mgrA.pid} at ${mgrA.address}`);
    const client = await HerdClient.connect(mgrA.address);
    clients.add(client);
    const probe = await HerdClient.connect(mgrA.address);
    clients.add(probe);

    // RSS and idle CPU with 0 nodes (fresh manager; let the sampler take a couple of samples).
    await sleep(1500);
    const rss0Fresh = vmRssKiB(mgrA.pid);
    log(`idle CPU, 0 nodes, ${cfg.cpuWindowS} s`);
    const cpu0 = want('idle') ? await cpuWindow(mgrA.pid, cfg.cpuWindowS) : null;

    // Warm-up: JIT, the xstate machinery, fs caches, for both sides.
    for (let i = 0; i < 2; i++) {
      await herdSpawn(client, cfg.warmupN);
      await herdReset(client, cfg.warmupN);
      const b = await bareSpawn(lightNode, cfg.warmupN, 'plain', path.join(tmpRoot, 'bare-logs'));
      await bareReset(b.children);
    }

    // The idle figures with N nodes running, from the first big generate of this manager (so the RSS
    // is not a high-water mark left by the spawn rounds): RSS, status vs ping, idle CPU at 1 Hz sampling.
    if (want('status') || want('idle')) {
      const n = cfg.idleNodes;
      await herdSpawn(client, n);
      await sleep(2000);
      const rssN = vmRssKiB(mgrA.pid);
      const idle: Record<string, unknown> = { nodes: n, rssKiB0Fresh: rss0Fresh, rssKiBN: rssN };
      if (want('status')) {
        log(`status/ping latency idle, ${n} nodes`);
        await latencies(() => probe.status(), 50); // warm-up
        const statusIdle = summarize(await latencies(() => probe.status(), cfg.statusIdleRequests));
        const pingIdle = summarize(await latencies(() => probe.ping(), cfg.statusIdleRequests));
        const statusBytes = Buffer.byteLength(JSON.stringify(await probe.status()));
        results.statusIdle = { nodes: n, statusMs: statusIdle, pingMs: pingIdle, statusReplyJsonBytes: statusBytes };
        row(`status p50 idle, ${n} nodes (base: ping), ms`, fmt(statusIdle.p50, 2), fmt(pingIdle.p50, 2), ratio(statusIdle.p50, pingIdle.p50));
        row(`status p99 idle, ${n} nodes (base: ping), ms`, fmt(statusIdle.p99, 2), fmt(pingIdle.p99, 2), ratio(statusIdle.p99, pingIdle.p99), target('status p99 idle', statusIdle.p99, 5, ' ms'));
      }
      if (want('idle')) {
        log(`idle CPU, ${n} nodes, ${cfg.idleWindows} ${cfg.idleWindowS} s windows after ${cfg.idleSettleS} s of quiet`);
        const cpuN = await idleCpu(mgrA.pid, cfg.idleSettleS, cfg.idleWindowS, cfg.idleWindows);
        const rssAfter = vmRssKiB(mgrA.pid);
        Object.assign(idle, { cpu0, cpuN, rssKiBNAfterCpuWindow: rssAfter, statsIntervalMs: cfg.statsIntervalMs, clkTck: clkTck() });
        const rssMax = Math.max(rssN, rssAfter);
        // In MB (10^6 bytes), as the target is stated.
        const mb = (kib: number) => (kib * 1024) / 1e6;
        row(`manager RSS, ${n} nodes (base: 0 nodes), MB`, fmt(mb(rssMax)), fmt(mb(rss0Fresh)), ratio(rssMax, rss0Fresh), target('RSS with 1000 nodes', mb(rssMax), 120, ' MB'));
        row(`manager CPU idle, ${cfg.idleWindows * cfg.idleWindowS} s after ${cfg.idleSettleS} s of quiet, 1 Hz sampling, ${n} nodes (base: 0), % core`, fmt(cpuN.meanPct, 2), fmt(cpu0!.meanPct, 2), ratio(cpuN.meanPct, cpu0!.meanPct), target('idle CPU with 1000 nodes', cpuN.meanPct, 1, ' %'));
        row(`  its worst ${cfg.idleWindowS} s window, % core`, fmt(cpuN.worstPct, 2));
        // Sleeping nodes in cgroups are not read one by one (src/sampler.ts): the same without the
        // cgroup layer, where the sampler reads every node every second, as for busy nodes.
        log(`idle CPU, ${n} nodes, without the cgroup layer`);
        const mgrE = await startManager(['--stats-interval-ms', String(cfg.statsIntervalMs), '--node-command', lightNode], path.join(tmpRoot, 'logs-e'), { env: { ...process.env, HERD_CGROUP: 'off' } });
        managers.add(mgrE);
        const clientE = await HerdClient.connect(mgrE.address);
        clients.add(clientE);
        await herdSpawn(clientE, n);
        const cpuNoCg = await idleCpu(mgrE.pid, cfg.idleSettleS, cfg.idleWindowS, cfg.idleWindows);
        await herdReset(clientE, n);
        await stop('E (HERD_CGROUP=off)', mgrE, clientE);
        Object.assign(idle, { settleS: cfg.idleSettleS, cpuNNoCgroup: cpuNoCg });
        row(`  diagnostic: the same without the cgroup layer (every node read), % core`, fmt(cpuNoCg.meanPct, 2), fmt(cpu0!.meanPct, 2), ratio(cpuNoCg.meanPct, cpu0!.meanPct));
      }
      results.idle = idle;
      await herdReset(client, n);
    }

    // spawn and reset, herd vs bare, interleaved per repetition.
    if (want('spawn')) {
      const spawnResults: Record<string, unknown> = {};
      for (const n of cfg.spawnSizes) {
        const reps = cfg.spawnReps;
        const s = { herdSpawn: [] as number[], herdReset: [] as number[], bareSpawn: [] as number[], bareReset: [] as number[], likeSpawn: [] as number[] };
        // CPU burnt by the spawning process itself (manager, or this bench for the bare loops), in ms:
        // less sensitive to scheduling noise than wall time on a small box. The manager's is read from
        // /proc in clock ticks (10 ms); this process's own through cpuUsage (µs), as a bare reset of
        // 200 takes a few ms of CPU and would mostly read as 0 ticks.
        const cpu = { herdSpawn: [] as number[], herdReset: [] as number[], bareSpawn: [] as number[], bareReset: [] as number[], likeSpawn: [] as number[] };
        for (let r = 0; r < reps; r++) {
          log(`spawn/reset N=${n} rep ${r + 1}/${reps}`);
          let c0 = cpuTicks(mgrA.pid);
          s.herdSpawn.push(await herdSpawn(client, n));
          let c1 = cpuTicks(mgrA.pid);
          s.herdReset.push(await herdReset(client, n));
          cpu.herdSpawn.push(ticksMs(c1 - c0));
          cpu.herdReset.push(ticksMs(cpuTicks(mgrA.pid) - c1));
          c0 = ownCpuMs();
          const b = await bareSpawn(lightNode, n, 'plain', path.join(tmpRoot, 'bare-logs'));
          c1 = ownCpuMs();
          s.bareSpawn.push(b.ms);
          s.bareReset.push(await bareReset(b.children));
          cpu.bareSpawn.push(round(c1 - c0, 1));
          cpu.bareReset.push(round(ownCpuMs() - c1, 1));
          // Fresh log files each time, as the manager creates a new gen-K directory per generation.
          c0 = ownCpuMs();
          const l = await bareSpawn(lightNode, n, 'launcherLike', path.join(tmpRoot, 'bare-logs', `n${n}-rep${r}`));
          cpu.likeSpawn.push(round(ownCpuMs() - c0, 1));
          s.likeSpawn.push(l.ms);
          await bareReset(l.children);
        }
        const sum = Object.fromEntries(Object.entries(s).map(([k, v]) => [k, { ...summarize(v), samplesMs: v.map((x) => round(x, 2)) }])) as Record<keyof typeof s, Summary & { samplesMs: number[] }>;
        const cpuSum = Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, { ...summarize(v), samplesMs: v }])) as Record<keyof typeof cpu, Summary & { samplesMs: number[] }>;
        spawnResults[`n${n}`] = { n, reps, ...sum, spawnerCpuMs: cpuSum, ratioSpawnMedian: round(sum.herdSpawn.median / sum.bareSpawn.median, 3), ratioResetMedian: round(sum.herdReset.median / sum.bareReset.median, 3) };
        bareSpawnMedian[n] = sum.bareSpawn.median;
        herdSpawnMedian[n] = sum.herdSpawn.median;
        herdResetMedian[n] = sum.herdReset.median;
        const sr = sum.herdSpawn.median / sum.bareSpawn.median;
        const rr = sum.herdReset.median / sum.bareReset.median;
        row(`spawn N=${n} until spawned, ms med (min)`, medMin(sum.herdSpawn), medMin(sum.bareSpawn), ratio(sum.herdSpawn.median, sum.bareSpawn.median), target(`spawn ${n} / bare`, sr, 1.2, 'x'));
        row(`  spawner CPU per node, ms (manager vs bench)`, fmt(cpuSum.herdSpawn.median / n, 2), fmt(cpuSum.bareSpawn.median / n, 2), ratio(cpuSum.herdSpawn.median, cpuSum.bareSpawn.median));
        row(`  vs launcher-like bare (+log file, env), ms`, medMin(sum.herdSpawn), medMin(sum.likeSpawn), ratio(sum.herdSpawn.median, sum.likeSpawn.median));
        row(`reset N=${n} until reaped, ms med (min)`, medMin(sum.herdReset), medMin(sum.bareReset), ratio(sum.herdReset.median, sum.bareReset.median), target(`reset ${n} / bare`, rr, 1.2, 'x'));
        row(`  killer CPU per node, ms (manager vs bench)`, fmt(cpuSum.herdReset.median / n, 2), fmt(cpuSum.bareReset.median / n, 2), ratio(cpuSum.herdReset.median, cpuSum.bareReset.median));
        if (n === cfg.spawnSizes[cfg.spawnSizes.length - 1]) {
          // The floor an actor per node puts under a reset, against the bare loop's whole reset per node.
          const chart = nodeChartCost(n);
          const perNode = (rounds: typeof chart.node) => summarize(rounds.map((r) => r.stopUs + r.exitUs)).median;
          const bareUs = (sum.bareReset.median * 1000) / n;
          spawnResults.nodeChart = { n, ...chart, usPerNode: perNode(chart.node), xstateUsPerNode: perNode(chart.bare), bareResetUsPerNode: round(bareUs, 1) };
          row(`  node chart alone (stop + exit, effects stubbed), µs per node (base: bare reset)`, fmt(perNode(chart.node), 1), fmt(bareUs, 1), ratio(perNode(chart.node), bareUs));
          row(`    the same two events through a bare 3-state XState machine, µs per node`, fmt(perNode(chart.bare), 1), fmt(bareUs, 1), ratio(perNode(chart.bare), bareUs));
        }
      }
      // Diagnostic: the same spawn/reset through a manager without the cgroup layer (HERD_CGROUP=off), to
      // show what the per-node cgroup move costs (the other containment layers stay on).
      const n = cfg.spawnSizes[cfg.spawnSizes.length - 1];
      const mgrD = await startManager(['--node-command', lightNode], path.join(tmpRoot, 'logs-d'), { env: { ...process.env, HERD_CGROUP: 'off' } });
      managers.add(mgrD);
      const clientD = await HerdClient.connect(mgrD.address);
      clients.add(clientD);
      await herdSpawn(clientD, cfg.warmupN);
      await herdReset(clientD, cfg.warmupN);
      const noCg = { spawn: [] as number[], reset: [] as number[], spawnCpu: [] as number[] };
      for (let r = 0; r < cfg.spawnReps; r++) {
        log(`spawn/reset N=${n} without the cgroup layer, rep ${r + 1}/${cfg.spawnReps}`);
        const c0 = cpuTicks(mgrD.pid);
        noCg.spawn.push(await herdSpawn(clientD, n));
        noCg.spawnCpu.push(ticksMs(cpuTicks(mgrD.pid) - c0));
        noCg.reset.push(await herdReset(clientD, n));
      }
      await stop('D (HERD_CGROUP=off)', mgrD, clientD);
      const ns = summarize(noCg.spawn);
      const nr = summarize(noCg.reset);
      spawnResults.noCgroup = { n, spawnMs: { ...ns, samplesMs: noCg.spawn }, resetMs: { ...nr, samplesMs: noCg.reset }, spawnCpuMs: summarize(noCg.spawnCpu) };
      row(`  diagnostic: spawn ${n} with HERD_CGROUP=off, ms (base: bare)`, medMin(ns), fmt(bareSpawnMedian[n]), ratio(ns.median, bareSpawnMedian[n]));
      row(`    its manager CPU per node, ms`, fmt(summarize(noCg.spawnCpu).median / n, 2));
      results.spawnReset = spawnResults;
    }

    // status while a generate of N is spawning.
    if (want('status')) {
      const during: number[][] = [];
      const duringGen: number[] = [];
      for (let r = 0; r < cfg.statusDuringReps; r++) {
        log(`status during generate ${cfg.statusDuringN}, rep ${r + 1}/${cfg.statusDuringReps}`);
        let done = false;
        const t0 = now();
        const gen = client.generate(cfg.statusDuringN, { wait: 'spawned' }).then(
          (res) => {
            done = true;
            duringGen.push(now() - t0);
            if (res.nodes.length !== cfg.statusDuringN) throw new Error(`generate returned ${res.nodes.length} nodes`);
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
        await herdReset(client, cfg.statusDuringN);
      }
      const statusDuring = summarize(during.flat());
      results.statusDuring = { n: cfg.statusDuringN, generateMs: summarize(duringGen), statusMs: statusDuring, samplesPerRep: during.map((l) => l.length) };
      row(`status p50 during generate ${cfg.statusDuringN}, ms`, fmt(statusDuring.p50, 2));
      row(`status p99 during generate ${cfg.statusDuringN}, ms`, fmt(statusDuring.p99, 2), '', '', target('status p99 while spawning', statusDuring.p99, 50, ' ms'));
      row(`  max / round trips per generate`, `${fmt(statusDuring.max, 1)} / ${during.map((l) => l.length).join(',')}`);
    }
    results.rssKiB0AfterRun = vmRssKiB(mgrA.pid);
    await stop('A', mgrA, client, probe);
  });

  // -- until connected: light connecting nodes (manager C) and example nodes (manager B) --
  if (want('connected')) await section('connected', async () => {
    const counter = await connectCounter();
    const connectedResults: Record<string, unknown> = {};
    results.connected = connectedResults;
    try {
      const kinds = [
        { name: 'light', label: 'light connecting node', command: connectNode, args: [] as string[], n: cfg.connectLightN, flags: ['--node-command', connectNode] },
        // The --node-arg tag only puts the tmp path into the nodes' command lines for the leftover check.
        { name: 'example', label: 'example node', command: EXAMPLE_NODE, args: [`--bench-tag=${tmpRoot}`], n: cfg.connectExampleN, flags: [`--node-arg=--bench-tag=${tmpRoot}`] },
      ];
      for (const k of kinds) {
        const mgr = await startManager(['--stats-interval-ms', String(cfg.statsIntervalMs), ...k.flags], path.join(tmpRoot, `logs-${k.name}`));
        managers.add(mgr);
        const c = await HerdClient.connect(mgr.address);
        clients.add(c);
        await herdSpawn(c, cfg.warmupN);
        await herdReset(c, cfg.warmupN);
        const herdMs: number[] = [];
        const herdResetMs: number[] = [];
        const bareMs: number[] = [];
        const bareResetMs: number[] = [];
        const env = { ...process.env, HERD_MANAGER: counter.address, HERD_GENERATION: '1' };
        for (let r = 0; r < cfg.connectReps; r++) {
          log(`${k.label}s: generate ${k.n} wait connected, rep ${r + 1}/${cfg.connectReps}`);
          const t0 = now();
          const res = await c.generate(k.n, { wait: 'connected', timeoutMs: 120_000 });
          herdMs.push(now() - t0);
          if (res.nodes.length !== k.n) throw new Error(`generate returned ${res.nodes.length} nodes`);
          herdResetMs.push(await herdReset(c, k.n));
          const b = await bareConnected(k.command, [...k.args, ...NODE_TAIL], k.n, counter, env);
          bareMs.push(b.ms);
          bareResetMs.push(await bareReset(b.children));
        }
        await stop(k.name, mgr, c);
        const h = summarize(herdMs);
        const b = summarize(bareMs);
        const hr = summarize(herdResetMs);
        const br = summarize(bareResetMs);
        connectedResults[k.name] = { n: k.n, herdMs: { ...h, samplesMs: herdMs.map((x) => round(x, 1)) }, bareMs: { ...b, samplesMs: bareMs.map((x) => round(x, 1)) }, herdResetMs: hr, bareResetMs: br };
        row(`generate ${k.n} ${k.label}s until connected, ms`, medMin(h, 0), medMin(b, 0), ratio(h.median, b.median), target(`connected ${k.n} ${k.name} / bare`, h.median / b.median, 1.2, 'x'));
        row(`  reset ${k.n} ${k.label}s, ms`, medMin(hr, 0), medMin(br, 0), ratio(hr.median, br.median));
      }
    } finally {
      await counter.close();
    }
  });

  // ---- pm2 and supervisor: start/stop the same light nodes through them ----
  if (want('peers')) await section('peers', async () => {
    const peerResults: unknown[] = [];
    let count = 0;
    for (const n of cfg.peerSizes) {
      for (const cost of [pm2Cost, supervisorCost]) {
        const r = await cost(lightNode, n, cfg.peerReps, path.join(tmpRoot, `peer-${count++}`), () => pgrep(sleepLink).length);
        peerResults.push(r);
        if ('skipped' in r) {
          log(`${r.peer}: skipped (${r.skipped})`);
          if (n === cfg.peerSizes[0]) row(`${r.peer}: skipped, ${r.skipped}`, '');
          continue;
        }
        const st = summarize(r.startMs);
        const sp = summarize(r.stopMs);
        const base = (m: Record<number, number>) => (m[n] === undefined ? NaN : m[n]);
        row(`${r.peer} ${r.version}: start ${n} (base: herd spawn), ms`, medMin(st, 0), fmt(base(herdSpawnMedian), 0), ratio(st.median, base(herdSpawnMedian)));
        row(`  stop ${n} (base: herd reset), ms`, medMin(sp, 0), fmt(base(herdResetMedian), 0), ratio(sp.median, base(herdResetMedian)));
        if (bareSpawnMedian[n] !== undefined) row(`  start ${n} vs bare spawn loop`, fmt(st.median, 0), fmt(bareSpawnMedian[n], 0), ratio(st.median, bareSpawnMedian[n]));
      }
    }
    results.peers = peerResults;
  });

  // ---- node output: the periodic size check and one rotation, in this process (the manager's code) ----
  if (want('output')) {
    log(`node output: size check of ${cfg.outputFiles} files, ${cfg.outputChecks} rounds; one ${cfg.outputRotateMiB} MiB rotation`);
    const nodeOutput = new NodeOutput({ logDir: path.join(tmpRoot, 'output'), maxBytes: cfg.outputRotateMiB * 1024 * 1024, logger: createLogger({ console: false }) });
    const outputFiles = Array.from({ length: cfg.outputFiles }, (_, i) => {
      const { fd, output } = nodeOutput.open(1, i);
      closeSync(fd);
      nodeOutput.started(output, process.pid);
      return path.join(tmpRoot, 'output', 'nodes', 'gen-1', `node-${i}.log`);
    });
    const check = () => (nodeOutput as unknown as { check(): Promise<void> }).check();
    const timed = async () => {
      const c0 = ownCpuMs();
      const t0 = now();
      await check();
      return { wall: now() - t0, cpu: ownCpuMs() - c0 };
    };
    const checksDone: { wall: number; cpu: number }[] = [];
    for (let r = 0; r < cfg.outputChecks; r++) checksDone.push(await timed());
    writeFileSync(outputFiles[0], Buffer.alloc(cfg.outputRotateMiB * 1024 * 1024 + 1, 0x61));
    // A quiet file is checked every few rounds only: the round that sees it rotates it.
    let rotation = await timed();
    for (let r = 0; r < 8 && !existsSync(`${outputFiles[0]}.1`); r++) rotation = await timed();
    if (!existsSync(`${outputFiles[0]}.1`)) throw new Error(`${outputFiles[0]} was not rotated within 9 checks`);
    const checkCpu = summarize(checksDone.map((c) => c.cpu));
    const checkWall = summarize(checksDone.map((c) => c.wall));
    results.nodeOutput = { files: cfg.outputFiles, checkCpuMs: checkCpu, checkWallMs: checkWall, firstCheck: checksDone[0], rotateMs: rotation };
    row(`node output size check, ${cfg.outputFiles} quiet files: CPU ms med (max)`, `${fmt(checkCpu.median, 2)} (${fmt(checkCpu.max, 2)})`);
    row(`  first check (every file stat'ed): CPU ms`, fmt(checksDone[0].cpu, 2));
    row(`  wall ms med (max), yielding every 5 ms`, `${fmt(checkWall.median, 2)} (${fmt(checkWall.max, 2)})`);
    row(`  check with one ${cfg.outputRotateMiB} MiB rotation: wall (CPU) ms`, `${fmt(rotation.wall, 1)} (${fmt(rotation.cpu, 1)})`);
  }

  // ---- the sampler's own cost, in this process, over 1000 live processes ----
  if (want('sampler')) {
    log(`sampler: ${cfg.samplerNodes} sleepers, ${cfg.samplerWindowS} s windows at 1 Hz (readFileSync, herd, herd + timeline)`);
    const sleepers = await bareSpawn(lightNode, cfg.samplerNodes, 'plain', path.join(tmpRoot, 'bare-logs'));
    const sampler = await samplerCost(sleepers.children.map((c) => c.proc.pid!), cfg.samplerWindowS, path.join(tmpRoot, 'sampler-logs'));
    await bareReset(sleepers.children);
    results.sampler = sampler;
    row(
      `sampler CPU, ${sampler.nodes} nodes at 1 Hz, % core (base: readFileSync)`,
      fmt(sampler.herd.pct, 2),
      fmt(sampler.readFileSync.pct, 2),
      ratio(sampler.herd.pct, sampler.readFileSync.pct),
      target('sampler, 1000 nodes at 1 Hz', sampler.herd.pct, 1, ' %'),
    );
    row(`  per sample, CPU ms`, fmt(sampler.herd.msPerSample, 2), fmt(sampler.readFileSync.msPerSample, 2));
    row(`  gross, with this process's idle CPU (${fmt(sampler.herd.idlePct, 2)} %), % core`, fmt(sampler.herd.grossPct, 2), fmt(sampler.readFileSync.grossPct, 2));
    row(`  with the timeline written, % core`, fmt(sampler.herdWithTimeline.pct, 2));
    row(`  longest event-loop delay while sampling, ms`, fmt(sampler.loopMaxMs, 2));
    row(`  processes started while sampling`, String(sampler.spawned));
  }

  // ---- report ----
  const cleanupReport = await cleanup(false);
  const totalS = round((now() - T0) / 1000, 1);

  const header: Row = { measure: 'measure', value: 'herd', baseline: 'baseline', ratio: 'ratio', target: 'target' };
  const all = [header, ...rows];
  const width = (k: keyof Row) => Math.max(...all.map((r) => [...r[k]].length));
  const w = { measure: width('measure'), value: width('value'), baseline: width('baseline'), ratio: width('ratio'), target: width('target') };
  const pad = (s: string, n: number, left: boolean) => (left ? ' '.repeat(Math.max(0, n - [...s].length)) + s : s + ' '.repeat(Math.max(0, n - [...s].length)));
  const line = (r: Row) => `${pad(r.measure, w.measure, false)}  ${pad(r.value, w.value, true)}  ${pad(r.baseline, w.baseline, true)}  ${pad(r.ratio, w.ratio, true)}  ${r.target}`.trimEnd();
  const out = [line(header), '-'.repeat(w.measure + w.value + w.baseline + w.ratio + w.target + 8), ...rows.map(line)];
  process.stdout.write(`${out.join('\n')}\n`);
  process.stdout.write(
    'baselines: spawn/reset = child_process.spawn(detached, stdio ignore, same argv) / kill(-pid, SIGTERM)-and-wait loops in this process;\n' +
      'connected = the same spawn loop with HERD_MANAGER pointing at a bare listener in this process that answers every frame ok;\n' +
      'ratio = herd / baseline (medians); peers: ratio = peer / herd\n',
  );
  const met = checks.filter((c) => c.met).length;
  process.stdout.write(`targets met: ${met} of ${checks.length}${checks.some((c) => !c.met) ? ` (missed: ${checks.filter((c) => !c.met).map((c) => c.target).join('; ')})` : ''}\n`);
  process.stdout.write(`managers stopped (SIGTERM): ${Object.entries(exits).map(([k, e]) => `${k} ${JSON.stringify(e)}`).join(', ') || 'none started'}\n`);
  process.stdout.write(`leftover processes matching ${tmpRoot}: ${cleanupReport.leftoverBeforeFallback.length}${cleanupReport.leftoverBeforeFallback.length ? ` (${cleanupReport.leftoverBeforeFallback.join(' ')}; SIGKILLed, now ${cleanupReport.leftoverAfter.length})` : ''}\n`);
  process.stdout.write(`total ${totalS} s\n`);

  results.cleanup = { ...cleanupReport, managers: exits };
  const report = { bench: 'herd', date: new Date().toISOString(), machine: info, config: cfg, totalSeconds: totalS, targets: checks, results, table: rows };
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(path.join(RESULTS_DIR, 'latest.json'), `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`wrote ${path.relative(process.cwd(), path.join(RESULTS_DIR, 'latest.json')) || path.join(RESULTS_DIR, 'latest.json')}\n`);
  if (cleanupReport.leftoverAfter.length > 0) process.exitCode = 1;
}

main().catch(async (err: Error) => {
  if (err instanceof UsageError) {
    process.stderr.write(`bench: ${err.message}\n`);
    process.exitCode = 2;
    return;
  }
  process.stderr.write(`bench failed: ${err.stack ?? err}\n`);
  for (const m of managers) process.stderr.write(`manager ${m.pid} stderr (tail):\n${m.stderrTail().slice(-4000)}\n`);
  const r = await cleanup(true);
  process.stderr.write(`cleanup: ${JSON.stringify(r)}; tmp dir kept: ${tmpRoot}\n`);
  process.exitCode = 1;
});
