// `npm run soak`: does a manager leak processes, descriptors or memory over many generations?
//
//   npm run soak -- --nodes 1000 --cycles 20 --idle-nodes 200 --idle-s 60      (the defaults)
//
// Starts a real manager subprocess (dist/src/cli.js manager --port 0) and drives it with
// HerdClient:
//
//   1. `cycles` times: generate `nodes` (wait "spawned", and every `connected-every`-th cycle
//      wait "connected"), then reset; after each reset, count leftover processes and record the
//      manager's open descriptors and RSS once its node connections have closed;
//   2. idle: generate `idle-nodes` (wait "connected"), measure the manager's CPU over `idle-s`
//      seconds, reset, count leftovers again;
//   3. SIGTERM the manager (it must exit 0) and check that nothing it started survives it.
//
// It prints a table per cycle and a verdict. The exit status is 1 if any process leaked, if the
// manager's descriptor count did not come back to its starting value (within `fd-tolerance`), or
// if the manager misbehaved (wrong `killed` count, non-zero exit); RSS growth is reported (flat =
// within `rss-tolerance-pct` of the RSS after the warm-up cycles, a quarter of them by default) but
// does not change the status.
//
// The node. Every node is a small bash script in a private tmp dir that
//   - connects to HERD_MANAGER with bash's /dev/tcp and sends `connect` with its own pid (a
//     hand-encoded 30-byte frame), then keeps that socket open for its whole life, so the
//     manager holds one connection per node, as with real nodes, and must let go of it;
//   - first starts a grandchild (`sleep`, through a symlink in the tmp dir) in its process group:
//     only the manager's kill of the whole group stops it, so descendant containment is exercised;
//   - on SIGTERM waits for that grandchild, then exits 0. The script reaps its own child because
//     PID 1 on these machines reaps nothing: an orphaned grandchild would stay a zombie for good
//     (pid_max is 32768; 20 cycles x 1000 nodes would come close).
// Every process carries the tmp path in its command line, and every node inherits SOAK_MARK=<uuid>
// from the manager's environment: after each reset, any live process with that path in its
// command line, or with SOAK_MARK and HERD_GENERATION in its environment, is a leftover; so is a
// zombie child of the manager (a node it never reaped). Leftovers still there after a settle
// window (2 s) are leaks. Zombies in a node's group whose parent is gone are counted apart: they
// are orphans PID 1 never reaps, not processes anyone could kill.
//
// The example node (dist/example/node.js) is not used: it is a ~57 MiB Node process that hashes
// for 5 ms every 200 ms, so 200 of them would ask for 2.5 cores on a 2-core machine (and 1000 of
// them for ~57 GiB), and the manager's idle CPU would be measured on a saturated host. The bash
// node still makes the manager do all its per-node work: a tracked process, a connection, a
// `connect`, a /proc read per stats sample. The idle figure excludes only the example node's own
// work, which is not the manager's.
//
// Memory. RSS is read after every reset, and so is the live V8 heap: a tiny probe preloaded into
// the soak's manager (node --expose-gc --require <tmp>/heap-probe.js; see PROBE_JS) forces a full
// GC on SIGUSR2 and prints process.memoryUsage(). RSS mixes retained objects with garbage and free
// pages not yet handed back; the heap after a forced GC does not. `--no-heap-probe` turns it off.
//
// This is a report; the scaled-down `npm test` version (test/soak.test.ts) asserts only on
// leaks and descriptor counts, never on time.

import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HerdClient } from '../src/client';
import { readStat } from '../src/proc';
import {
  allPids, clkTck, cpuTicks, fdCount, fdKinds, machine, Manager, ManagerExit, now, readCmdline, readEnviron,
  RESULTS_DIR, round, sleep, startManager, stopManager, vmRssKiB,
} from './common';

export interface SoakOptions {
  /** Nodes per generate/reset cycle. */
  nodes: number;
  cycles: number;
  /** Every k-th cycle waits for "connected" instead of "spawned" (0: never). */
  connectedEvery: number;
  /** Nodes kept running (connected) during the idle CPU window. */
  idleNodes: number;
  idleS: number;
  /** Descriptors the manager may hold above its starting count and still count as flat. */
  fdTolerance: number;
  /** RSS growth (end vs. after the warm-up cycles) still counted as flat, in %. */
  rssTolerancePct: number;
  /** Cycles that warm the manager up (JIT, V8 heap sizing) before its RSS baseline; 0: a quarter of the cycles, at least 1. */
  rssWarmupCycles: number;
  /** How long leftovers and node connections may take to go away after a reset reply. */
  settleMs: number;
  /** The manager's --stats-interval-ms (its sampler runs during the idle window too). */
  statsIntervalMs: number;
  /** Preload the heap probe into the manager (forced GC + memoryUsage at every 0-node check). */
  heapProbe: boolean;
  keepTmp: boolean;
  /** Where the JSON report goes; null: nowhere. */
  resultsFile: string | null;
  /** Progress lines. */
  log: (msg: string) => void;
}

export const DEFAULT_OPTIONS: SoakOptions = {
  nodes: 1000,
  cycles: 20,
  connectedEvery: 2,
  idleNodes: 200,
  idleS: 60,
  fdTolerance: 2,
  rssTolerancePct: 20,
  rssWarmupCycles: 0,
  settleMs: 2000,
  statsIntervalMs: 1000,
  heapProbe: true,
  keepTmp: false,
  resultsFile: null,
  log: () => undefined,
};

interface Leftover { pid: number; ppid: number; pgid: number; state: string; why: 'cmdline' | 'environ' | 'unreaped'; cmd: string }

/** One look at /proc for what the soak's nodes left behind. */
interface Scan {
  /** Live (non-zombie) processes of ours, and zombie children of the manager. */
  leftovers: Leftover[];
  /** Zombies in one of this round's node groups whose parent is not the manager (orphans of PID 1). */
  orphanZombies: number;
}

export interface CheckResult {
  /** Leftovers at the moment the reset reply arrived (informational: the contract lets descendants lag a hair). */
  atReply: number;
  /** Leftovers still there after the settle window: leaks. */
  leaked: number;
  leakedSample: Leftover[];
  orphanZombies: number;
  /** Manager descriptors and RSS once settled. */
  fds: number;
  rssKiB: number;
  settleMs: number;
  /** The manager's process.memoryUsage() right after a forced full GC (the heap probe), KiB; null without the probe. */
  heapUsedKiB: number | null;
  externalKiB: number | null;
}

export interface CycleRow extends CheckResult {
  cycle: number;
  /** The manager's generation number for this cycle's generate. */
  generation: number;
  wait: 'spawned' | 'connected';
  generateMs: number;
  resetMs: number;
  killed: number;
  /** Manager descriptors and RSS right after the generate reply (with `nodes` nodes running). */
  peakFds: number;
  peakRssKiB: number;
  /** Live processes in the nodes' groups right after the generate reply (node + grandchild each, once started). */
  groupProcs: number;
}

export interface SoakReport {
  ok: boolean;
  /** Why `ok` is false (empty when ok). */
  failures: string[];
  warnings: string[];
  options: Omit<SoakOptions, 'log'>;
  machine: ReturnType<typeof machine>;
  managerPid: number;
  /** Total leaked processes: every cycle, the idle phase, and after the manager's exit. */
  leaked: number;
  fds: { start: number; end: number; growth: number; max: number; kindsStart: Record<string, number>; kindsEnd: Record<string, number> };
  rss: { startKiB: number; warmupCycles: number; afterWarmupKiB: number; endKiB: number; peakKiB: number; growthPct: number; slopeKiBPerCycle: number; flat: boolean };
  /** The manager's live V8 heap (heapUsed after a forced full GC) at 0 nodes; null without the probe. */
  heap: { startKiB: number | null; afterWarmupKiB: number | null; endKiB: number | null; growthPct: number | null; slopeKiBPerCycle: number | null; externalStartKiB: number | null; externalEndKiB: number | null };
  cycles: CycleRow[];
  idle: CheckResult & { nodes: number; seconds: number; cpuPct: number; cpuPerSecondPct: number[]; cpuMaxSecondPct: number; fds: number; fdsWithNodes: number; groupProcs: number; rssKiBWithNodes: number; generateMs: number; resetMs: number; killed: number };
  afterStop: { exit: ManagerExit; leaked: number; leakedSample: Leftover[]; orphanZombies: number };
  diagnostics: { managerWarnings: number; managerWarningSample: string[]; nodeOutput: Record<string, NodeOutput> };
  /** Wall time per phase, seconds. */
  phases: { start: number; cycles: number; perCycleMean: number; idle: number; stop: number; total: number };
  tmpDir: string;
}

// ---- the node fixture -------------------------------------------------------------

/** The bash node described at the top. `sleepLink` is a symlink to sleep inside the tmp dir. */
function nodeScript(bash: string, sleepLink: string): string {
  // Plain strings, not a template: bash's ${...} would be taken for interpolation.
  return [
    '#!' + bash,
    '# herd soak node: run by the manager as <this> <interface-host:port> <machine-ip>.',
    '# On SIGTERM: reap the grandchild (killed by the same group signal), exit 0.',
    "trap 'wait; exit 0' TERM",
    '# A grandchild in this process group, started before the connect so that it exists by the time',
    '# the manager counts this node as connected.',
    '"' + sleepLink + '" infinity &',
    'hp=$HERD_MANAGER; host=${hp%:*}; port=${hp##*:}; host=${host#[}; host=${host%]}',
    'exec 3<>"/dev/tcp/$host/$port" || exit 4',
    '# {id: 2, cmd: "connect", pid: <uint32 $$>} as a length-prefixed MessagePack frame; the socket',
    "# stays open (fd 3) for the node's whole life, as a real node's would.",
    'p=$$',
    "printf -v pid '\\\\x%02x\\\\x%02x\\\\x%02x\\\\x%02x' $((p>>24&255)) $((p>>16&255)) $((p>>8&255)) $((p&255))",
    "printf '%b' \"\\x00\\x00\\x00\\x1a\\x83\\xa2id\\x02\\xa3cmd\\xa7connect\\xa3pid\\xce$pid\" >&3",
    'wait',
    '',
  ].join('\n');
}

/** Writes the bash node and its `sleep` symlink into `dir`. */
export function writeNodeFixture(dir: string): { nodeCmd: string; sleepLink: string; sleepBin: string } {
  const sleepBin = ['/bin/sleep', '/usr/bin/sleep'].find((p) => existsSync(p));
  const bash = ['/bin/bash', '/usr/bin/bash'].find((p) => existsSync(p));
  if (!sleepBin || !bash) throw new Error('the soak node needs /bin/bash and /bin/sleep');
  const sleepLink = path.join(dir, 'sleep');
  symlinkSync(sleepBin, sleepLink);
  const nodeCmd = path.join(dir, 'soak-node.sh');
  writeFileSync(nodeCmd, nodeScript(bash, sleepLink));
  chmodSync(nodeCmd, 0o755);
  return { nodeCmd, sleepLink, sleepBin };
}

// ---- /proc checks -----------------------------------------------------------------

interface Ctx { tmpDir: string; mark: string; managerPid: number }

function scan(ctx: Ctx, groups: ReadonlySet<number>, opts: { managerAlive: boolean }): Scan {
  const leftovers: Leftover[] = [];
  let orphanZombies = 0;
  for (const pid of allPids()) {
    if (pid === process.pid || (opts.managerAlive && pid === ctx.managerPid)) continue;
    const st = readStat(pid);
    if (!st) continue;
    if (st.state === 'Z' || st.state === 'X') {
      if (opts.managerAlive && st.ppid === ctx.managerPid) leftovers.push({ pid, ppid: st.ppid, pgid: st.pgid, state: st.state, why: 'unreaped', cmd: '' });
      else if (groups.has(st.pgid)) orphanZombies++;
      continue;
    }
    const cmd = readCmdline(pid);
    if (cmd.includes(ctx.tmpDir)) {
      leftovers.push({ pid, ppid: st.ppid, pgid: st.pgid, state: st.state, why: 'cmdline', cmd });
      continue;
    }
    const env = readEnviron(pid);
    // While the manager lives, only its nodes (HERD_GENERATION) count: its own helpers carry the mark too.
    if (env.includes(ctx.mark) && (!opts.managerAlive || env.some((e) => e.startsWith('HERD_GENERATION=')))) {
      leftovers.push({ pid, ppid: st.ppid, pgid: st.pgid, state: st.state, why: 'environ', cmd });
    }
  }
  return { leftovers, orphanZombies };
}

/** Live processes in the given process groups (the nodes and their grandchildren). */
function census(groups: ReadonlySet<number>): number {
  let n = 0;
  for (const pid of allPids()) {
    const st = readStat(pid);
    if (st && groups.has(st.pgid) && st.state !== 'Z' && st.state !== 'X') n++;
  }
  return n;
}

/** The leftover detector must see a process by its command line and by its environment: plant one of each. */
async function detectorSelfCheck(ctx: Ctx, sleepLink: string, sleepBin: string, markValue: string): Promise<void> {
  const env = { ...process.env, SOAK_MARK: markValue, HERD_GENERATION: '0' };
  const planted = [spawn(sleepLink, ['infinity'], { stdio: 'ignore' }), spawn(sleepBin, ['infinity'], { stdio: 'ignore', env })];
  try {
    await Promise.all(planted.map((c) => new Promise<void>((resolve, reject) => c.once('spawn', resolve).once('error', reject))));
    const found = scan(ctx, new Set(), { managerAlive: true }).leftovers;
    const why = planted.map((c) => found.find((l) => l.pid === c.pid)?.why);
    if (why[0] !== 'cmdline' || why[1] !== 'environ') throw new Error(`leftover detector self-check failed: planted processes ${planted.map((c) => c.pid).join(', ')} seen as ${JSON.stringify(why)}`);
  } finally {
    await Promise.all(planted.map((c) => (c.exitCode !== null || c.signalCode !== null ? undefined : new Promise((resolve) => c.once('exit', resolve).kill('SIGKILL')))));
  }
}

/** After a reset reply: leftovers now, then wait (up to settleMs) for them and the node connections to go. */
async function checkAfterReset(ctx: Ctx, groups: ReadonlySet<number>, fdTarget: number, opts: SoakOptions, probe: HeapProbe | null): Promise<CheckResult> {
  // fdTarget is the starting count: waiting for it exactly (not start + tolerance) keeps a
  // descriptor still closing from passing as a plateau.
  const t0 = now();
  let s = scan(ctx, groups, { managerAlive: true });
  const atReply = s.leftovers.length;
  let fds = fdCount(ctx.managerPid);
  // Node sockets close as their processes die; the manager sees each EOF a little later.
  while ((s.leftovers.length > 0 || fds > fdTarget) && now() - t0 < opts.settleMs) {
    await sleep(50);
    s = scan(ctx, groups, { managerAlive: true });
    fds = fdCount(ctx.managerPid);
  }
  const settleMs = round(now() - t0, 0);
  const rssKiB = vmRssKiB(ctx.managerPid); // before the probe's GC
  const mem = probe ? await probe.read() : null;
  return {
    atReply,
    leaked: s.leftovers.length,
    leakedSample: s.leftovers.slice(0, 5),
    orphanZombies: s.orphanZombies,
    fds,
    rssKiB,
    settleMs,
    heapUsedKiB: mem ? Math.round(mem.heapUsed / 1024) : null,
    externalKiB: mem ? Math.round(mem.external / 1024) : null,
  };
}

/** Least-squares slope of ys against 0..n-1. */
function slope(ys: number[]): number {
  const n = ys.length;
  if (n < 2) return 0;
  const mx = (n - 1) / 2;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  ys.forEach((y, x) => {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  });
  return num / den;
}

/** Node output, by the wait of the cycle its generation belonged to. */
interface NodeOutput { logs: number; messages: Record<string, number> }

/**
 * Warning/error lines of manager.log, and node logs with any output (a node that failed says why
 * there). A bash node killed by a reset while its connect is still in progress prints
 * "Interrupted system call": expected after a "spawned" wait, never after a "connected" one.
 */
function diagnostics(logDir: string, waitOf: ReadonlyMap<number, string>): SoakReport['diagnostics'] {
  const warnings: string[] = [];
  try {
    for (const line of readFileSync(path.join(logDir, 'manager.log'), 'utf8').split('\n')) {
      if (/"level":"(warn|error)"/.test(line)) warnings.push(line.length > 300 ? `${line.slice(0, 300)}...` : line);
    }
  } catch {
    /* no log */
  }
  const nodeOutput: Record<string, NodeOutput> = {};
  const nodesDir = path.join(logDir, 'nodes');
  for (const gen of existsSync(nodesDir) ? readdirSync(nodesDir) : []) {
    const wait = waitOf.get(Number(gen.replace(/^gen-/, ''))) ?? 'unknown';
    for (const f of readdirSync(path.join(nodesDir, gen))) {
      const file = path.join(nodesDir, gen, f);
      if (statSync(file).size === 0) continue;
      const out = (nodeOutput[wait] ??= { logs: 0, messages: {} });
      out.logs++;
      for (const line of readFileSync(file, 'utf8').split('\n').filter(Boolean)) {
        // One key per kind of message: no paths, ports, line numbers.
        const key = line.replace(/\/\S*/g, '<path>').replace(/\d+/g, 'N').slice(0, 120);
        out.messages[key] = (out.messages[key] ?? 0) + 1;
      }
    }
  }
  return { managerWarnings: warnings.length, managerWarningSample: warnings.slice(0, 3), nodeOutput };
}

/**
 * Preloaded into the manager (`node --expose-gc --require <probe> cli.js manager ...`): on SIGUSR2
 * (which herd does not use), a full GC, then process.memoryUsage() as one stdout line. The heap
 * left after a forced GC is what the manager really retains; RSS alone cannot tell retained
 * objects from garbage and free pages that V8 and malloc have not handed back yet. src/ is not
 * touched: the probe exists only in the soak's manager.
 */
const PROBE_JS = `process.on('SIGUSR2', () => {
  global.gc();
  process.stdout.write('soak-probe ' + JSON.stringify(process.memoryUsage()) + '\\n');
});
`;

class HeapProbe {
  private readonly waiters: ((m: NodeJS.MemoryUsage) => void)[] = [];
  pid = 0;

  onLine(line: string): void {
    if (!line.startsWith('soak-probe ')) return;
    this.waiters.shift()?.(JSON.parse(line.slice('soak-probe '.length)) as NodeJS.MemoryUsage);
  }

  /** Forces a full GC in the manager and returns its memoryUsage(); null if no answer within 10 s. */
  read(): Promise<NodeJS.MemoryUsage | null> {
    return new Promise((resolve) => {
      const waiter = (m: NodeJS.MemoryUsage) => {
        clearTimeout(timer);
        resolve(m);
      };
      const timer = setTimeout(() => {
        const k = this.waiters.indexOf(waiter);
        if (k >= 0) this.waiters.splice(k, 1);
        resolve(null);
      }, 10_000);
      this.waiters.push(waiter);
      process.kill(this.pid, 'SIGUSR2');
    });
  }
}

// ---- cleanup ----------------------------------------------------------------------

/** Cleanups of soaks in progress, for main's SIGINT handler. */
const running = new Set<() => Promise<void>>();

/** SIGKILLs whatever is left of ours: processes with our tmp path in their command line or our mark in their environment. */
function killOurs(ctx: Ctx): number {
  let n = 0;
  for (const l of scan(ctx, new Set(), { managerAlive: false }).leftovers) {
    try {
      process.kill(l.pid, 'SIGKILL');
      n++;
    } catch {
      /* gone */
    }
  }
  return n;
}

// ---- the soak ---------------------------------------------------------------------

export async function soak(options: Partial<SoakOptions> = {}): Promise<SoakReport> {
  const opts: SoakOptions = { ...DEFAULT_OPTIONS, ...options };
  const T0 = now();
  const log = (msg: string) => opts.log(`[soak +${((now() - T0) / 1000).toFixed(1)}s] ${msg}`);

  const tmpDir = mkdtempSync(path.join(os.tmpdir(), 'herd-soak-'));
  const markValue = randomUUID();
  const mark = `SOAK_MARK=${markValue}`;
  const { nodeCmd, sleepLink, sleepBin } = writeNodeFixture(tmpDir);
  const logDir = path.join(tmpDir, 'logs');
  log(`tmp dir ${tmpDir}; ${mark}`);

  const maxNodes = Math.max(opts.nodes, opts.idleNodes, 5000);
  let probe: HeapProbe | null = null;
  const nodeFlags: string[] = [];
  if (opts.heapProbe) {
    probe = new HeapProbe();
    const probeFile = path.join(tmpDir, 'heap-probe.js');
    writeFileSync(probeFile, PROBE_JS);
    nodeFlags.push('--expose-gc', '--require', probeFile);
  }
  const mgr: Manager = await startManager(
    ['--node-command', nodeCmd, '--stats-interval-ms', String(opts.statsIntervalMs), '--max-nodes', String(maxNodes)],
    logDir,
    { env: { ...process.env, SOAK_MARK: markValue }, nodeFlags, onStdoutLine: (line) => probe?.onLine(line) },
  );
  if (probe) probe.pid = mgr.pid;
  const ctx: Ctx = { tmpDir, mark, managerPid: mgr.pid };
  let client: HerdClient | null = null;
  let stopped: ManagerExit | null = null;
  let failed = true;
  const cleanup = async () => {
    await client?.close().catch(() => undefined);
    if (!stopped) stopped = await stopManager(mgr);
    const killed = killOurs(ctx);
    if (killed > 0) log(`cleanup: SIGKILLed ${killed} leftover process(es)`);
  };
  running.add(cleanup);
  try {
    log(`manager pid ${mgr.pid} at ${mgr.address}`);
    client = await HerdClient.connect(mgr.address);
    await sleep(1500); // let the sampler start and take its first samples
    const fdsStart = fdCount(mgr.pid);
    const kindsStart = fdKinds(mgr.pid);
    const rssStartKiB = vmRssKiB(mgr.pid);
    const memStart = probe ? await probe.read() : null;
    if (probe && !memStart) throw new Error('the heap probe did not answer (manager started without it?)');
    const startS = (now() - T0) / 1000;
    log(`start: ${fdsStart} fds, RSS ${(rssStartKiB / 1024).toFixed(1)} MiB`);
    await detectorSelfCheck(ctx, sleepLink, sleepBin, markValue);

    const failures: string[] = [];
    const warnings: string[] = [];

    // -- 1. generate/reset cycles ---------------------------------------------------
    const tCycles = now();
    const cycles: CycleRow[] = [];
    for (let c = 1; c <= opts.cycles; c++) {
      const wait = opts.connectedEvery > 0 && c % opts.connectedEvery === 0 ? 'connected' : 'spawned';
      const t0 = now();
      const gen = await client.generate(opts.nodes, { wait, timeoutMs: Math.max(60_000, opts.nodes * 60) });
      const generateMs = now() - t0;
      if (gen.nodes.length !== opts.nodes) failures.push(`cycle ${c}: generate returned ${gen.nodes.length} nodes, not ${opts.nodes}`);
      const peakFds = fdCount(mgr.pid);
      const peakRssKiB = vmRssKiB(mgr.pid);
      const groups = new Set(gen.nodes.map((n) => n.pid));
      const groupProcs = census(groups);
      const t1 = now();
      const { killed } = await client.reset();
      const resetMs = now() - t1;
      if (killed !== opts.nodes) failures.push(`cycle ${c}: reset killed ${killed}, not ${opts.nodes}`);
      const check = await checkAfterReset(ctx, groups, fdsStart, opts, probe);
      const row: CycleRow = { cycle: c, generation: gen.generation, wait, generateMs: round(generateMs, 0), resetMs: round(resetMs, 0), killed, peakFds, peakRssKiB, groupProcs, ...check };
      cycles.push(row);
      log(
        `cycle ${c}/${opts.cycles}: generate ${opts.nodes} (wait ${wait}) ${row.generateMs} ms, reset ${row.resetMs} ms (killed ${killed}); ${groupProcs} processes in node groups; ` +
          `fds ${peakFds} -> ${check.fds}, RSS ${(peakRssKiB / 1024).toFixed(1)} -> ${(check.rssKiB / 1024).toFixed(1)} MiB; ` +
          `leftovers at reply ${check.atReply}, leaked ${check.leaked}, orphan zombies ${check.orphanZombies}`,
      );
      for (const l of check.leakedSample) log(`  leaked: pid ${l.pid} ppid ${l.ppid} pgid ${l.pgid} state ${l.state} (${l.why}) ${l.cmd}`);
    }
    const cyclesS = (now() - tCycles) / 1000;

    // -- 2. idle ----------------------------------------------------------------------
    const tIdle = now();
    log(`idle: generate ${opts.idleNodes} (wait connected), then ${opts.idleS} s of manager CPU`);
    const g0 = now();
    const idleGen = await client.generate(opts.idleNodes, { wait: 'connected', timeoutMs: Math.max(60_000, opts.idleNodes * 60) });
    const idleGenerateMs = round(now() - g0, 0);
    if (idleGen.nodes.length !== opts.idleNodes) failures.push(`idle: generate returned ${idleGen.nodes.length} nodes, not ${opts.idleNodes}`);
    await sleep(2000); // past the spawn work and the first sample that includes the new nodes
    const fdsWithNodes = fdCount(mgr.pid);
    const idleGroupProcs = census(new Set(idleGen.nodes.map((n) => n.pid)));
    const hz = clkTck();
    const w0 = { ticks: cpuTicks(mgr.pid), t: now() };
    let prev = w0;
    const perSecond: number[] = [];
    const seconds = Math.max(1, Math.round(opts.idleS));
    for (let i = 0; i < seconds; i++) {
      await sleep(1000);
      const cur = { ticks: cpuTicks(mgr.pid), t: now() };
      perSecond.push(round(((cur.ticks - prev.ticks) / hz / ((cur.t - prev.t) / 1000)) * 100, 1));
      prev = cur;
    }
    const cpuPct = round(((prev.ticks - w0.ticks) / hz / ((prev.t - w0.t) / 1000)) * 100, 2);
    const rssKiBWithNodes = vmRssKiB(mgr.pid);
    const r0 = now();
    const idleKilled = (await client.reset()).killed;
    const idleResetMs = round(now() - r0, 0);
    if (idleKilled !== opts.idleNodes) failures.push(`idle: reset killed ${idleKilled}, not ${opts.idleNodes}`);
    const idleCheck = await checkAfterReset(ctx, new Set(idleGen.nodes.map((n) => n.pid)), fdsStart, opts, probe);
    for (const l of idleCheck.leakedSample) log(`  leaked: pid ${l.pid} ppid ${l.ppid} pgid ${l.pgid} state ${l.state} (${l.why}) ${l.cmd}`);
    const idleS = (now() - tIdle) / 1000;
    log(`idle: CPU ${cpuPct}% of a core with ${opts.idleNodes} nodes; after reset ${idleCheck.fds} fds, RSS ${(idleCheck.rssKiB / 1024).toFixed(1)} MiB, leaked ${idleCheck.leaked}`);

    // The end state: the same as the start (0 nodes, one idle client), after everything.
    const fdsEnd = idleCheck.fds;
    const kindsEnd = fdKinds(mgr.pid);
    const rssEndKiB = idleCheck.rssKiB;

    // -- 3. stop ------------------------------------------------------------------------
    const tStop = now();
    await client.close();
    client = null;
    const exit = await stopManager(mgr);
    stopped = exit;
    if (exit.code !== 0 || exit.forced) failures.push(`manager exit on SIGTERM: code ${exit.code}, signal ${exit.signal}${exit.forced ? ' (SIGKILLed after 20 s)' : ''}`);
    let after = scan(ctx, new Set(idleGen.nodes.map((n) => n.pid)), { managerAlive: false });
    for (let i = 0; i < opts.settleMs / 50 && after.leftovers.length > 0; i++) {
      await sleep(50);
      after = scan(ctx, new Set(idleGen.nodes.map((n) => n.pid)), { managerAlive: false });
    }
    const stopS = (now() - tStop) / 1000;
    log(`manager stopped: code ${exit.code} in ${exit.ms} ms; leftovers after its exit ${after.leftovers.length}`);

    // -- verdict --------------------------------------------------------------------------
    const leaked = cycles.reduce((a, r) => a + r.leaked, 0) + idleCheck.leaked + after.leftovers.length;
    if (leaked > 0) failures.push(`${leaked} leaked process(es)`);
    const fdGrowth = fdsEnd - fdsStart;
    if (fdGrowth > opts.fdTolerance) failures.push(`manager descriptors grew from ${fdsStart} to ${fdsEnd} (tolerance ${opts.fdTolerance}); by kind ${JSON.stringify(kindsStart)} -> ${JSON.stringify(kindsEnd)}`);
    const warmup = Math.min(cycles.length, opts.rssWarmupCycles || Math.max(1, Math.round(cycles.length / 4)));
    const afterWarmup = cycles[warmup - 1]?.rssKiB ?? rssStartKiB;
    const growthPct = round(((rssEndKiB - afterWarmup) / afterWarmup) * 100, 1);
    const rssFlat = growthPct <= opts.rssTolerancePct;
    if (!rssFlat) warnings.push(`manager RSS grew ${growthPct}% after the warm-up (cycle ${warmup}) (> ${opts.rssTolerancePct}%)`);
    const orphans = cycles.reduce((a, r) => a + r.orphanZombies, 0) + idleCheck.orphanZombies + after.orphanZombies;
    if (orphans > 0) warnings.push(`${orphans} orphaned zombie(s) in node groups (PID 1 does not reap them; not killable, not counted as leaks)`);
    const waitOf = new Map<number, string>([...cycles.map((r) => [r.generation, r.wait] as const), [idleGen.generation, 'connected']]);
    const diag = diagnostics(logDir, waitOf);
    if (diag.managerWarnings > 0) warnings.push(`manager.log has ${diag.managerWarnings} warning/error line(s), e.g. ${diag.managerWarningSample[0]}`);
    for (const [wait, out] of Object.entries(diag.nodeOutput)) {
      const top = Object.entries(out.messages).sort((a, b) => b[1] - a[1]).slice(0, 2).map(([msg, n]) => `${n}x "${msg}"`).join(', ');
      const expected = wait === 'spawned' && Object.keys(out.messages).every((msg) => /Interrupted system call/.test(msg));
      warnings.push(`${out.logs} node log(s) of "${wait}" cycles have output${expected ? ' (nodes reset while their connect was in progress: expected)' : ''}: ${top}`);
    }

    const settled = cycles.map((r) => r.rssKiB);
    const heapAfterWarmup = cycles[warmup - 1]?.heapUsedKiB ?? null;
    const heapEnd = idleCheck.heapUsedKiB;
    const heapGrowthPct = heapAfterWarmup && heapEnd !== null ? round(((heapEnd - heapAfterWarmup) / heapAfterWarmup) * 100, 1) : null;
    if (heapGrowthPct !== null && heapGrowthPct > opts.rssTolerancePct) warnings.push(`manager live heap grew ${heapGrowthPct}% after the warm-up (cycle ${warmup}): ${heapAfterWarmup} -> ${heapEnd} KiB`);
    const report: SoakReport = {
      ok: failures.length === 0,
      failures,
      warnings,
      options: { ...opts, log: undefined } as unknown as Omit<SoakOptions, 'log'>,
      machine: machine(),
      managerPid: mgr.pid,
      leaked,
      fds: { start: fdsStart, end: fdsEnd, growth: fdGrowth, max: Math.max(fdsStart, ...cycles.map((r) => r.peakFds), fdsWithNodes), kindsStart, kindsEnd },
      rss: {
        startKiB: rssStartKiB,
        warmupCycles: warmup,
        afterWarmupKiB: afterWarmup,
        endKiB: rssEndKiB,
        peakKiB: Math.max(rssStartKiB, ...cycles.map((r) => Math.max(r.peakRssKiB, r.rssKiB)), rssKiBWithNodes, idleCheck.rssKiB),
        growthPct,
        slopeKiBPerCycle: round(slope(settled.slice(warmup - 1)), 1),
        flat: rssFlat,
      },
      heap: {
        startKiB: memStart ? Math.round(memStart.heapUsed / 1024) : null,
        afterWarmupKiB: heapAfterWarmup,
        endKiB: heapEnd,
        growthPct: heapGrowthPct,
        slopeKiBPerCycle: probe ? round(slope(cycles.slice(warmup - 1).map((r) => r.heapUsedKiB ?? 0)), 1) : null,
        externalStartKiB: memStart ? Math.round(memStart.external / 1024) : null,
        externalEndKiB: idleCheck.externalKiB,
      },
      cycles,
      idle: { ...idleCheck, nodes: opts.idleNodes, seconds, cpuPct, cpuPerSecondPct: perSecond, cpuMaxSecondPct: Math.max(...perSecond), fdsWithNodes, groupProcs: idleGroupProcs, rssKiBWithNodes, generateMs: idleGenerateMs, resetMs: idleResetMs, killed: idleKilled },
      afterStop: { exit, leaked: after.leftovers.length, leakedSample: after.leftovers.slice(0, 5), orphanZombies: after.orphanZombies },
      diagnostics: diag,
      phases: { start: round(startS, 1), cycles: round(cyclesS, 1), perCycleMean: round(cyclesS / Math.max(1, opts.cycles), 1), idle: round(idleS, 1), stop: round(stopS, 1), total: round((now() - T0) / 1000, 1) },
      tmpDir,
    };
    if (opts.resultsFile) {
      mkdirSync(path.dirname(opts.resultsFile), { recursive: true });
      writeFileSync(opts.resultsFile, `${JSON.stringify(report, null, 2)}\n`);
    }
    failed = !report.ok;
    return report;
  } finally {
    await cleanup();
    running.delete(cleanup);
    if (!failed && !opts.keepTmp) rmSync(tmpDir, { recursive: true, force: true });
    else log(`tmp dir kept: ${tmpDir}`);
  }
}

// ---- the report -------------------------------------------------------------------

const mib = (kib: number) => (kib / 1024).toFixed(1);
const heap = (kib: number | null) => (kib === null ? '-' : mib(kib));
const ordinal = (k: number) => (k === 1 ? '' : k === 2 ? '2nd' : k === 3 ? '3rd' : `${k}th`);

export function formatReport(r: SoakReport): string {
  const o = r.options;
  const out: string[] = [];
  const m = r.machine;
  out.push(`machine: ${m.nproc} cpu(s), ${m.cpuModel}, node ${m.node}, linux ${m.kernel}, ${m.memTotalMiB} MiB`);
  out.push(`soak: ${o.cycles} cycles x ${o.nodes} nodes (${o.connectedEvery ? `every ${ordinal(o.connectedEvery)} cycle waits "connected", the others "spawned"` : 'all wait "spawned"'}), then ${o.idleNodes} idle nodes for ${o.idleS} s; manager pid ${r.managerPid}`);
  out.push('');
  const head = ['cycle', 'wait', 'gen ms', 'procs', 'reset ms', 'killed', 'fds peak', 'fds after', 'RSS peak', 'RSS after', 'heap', 'left@reply', 'leaked', 'orph Z', 'settle ms'];
  const rows = r.cycles.map((c) => [c.cycle, c.wait, c.generateMs, c.groupProcs, c.resetMs, c.killed, c.peakFds, c.fds, mib(c.peakRssKiB), mib(c.rssKiB), heap(c.heapUsedKiB), c.atReply, c.leaked, c.orphanZombies, c.settleMs].map(String));
  const i = r.idle;
  rows.push(['idle', 'connected', String(i.generateMs), String(i.groupProcs), String(i.resetMs), String(i.killed), String(i.fdsWithNodes), String(i.fds), mib(i.rssKiBWithNodes), mib(i.rssKiB), heap(i.heapUsedKiB), String(i.atReply), String(i.leaked), String(i.orphanZombies), String(i.settleMs)]);
  const w = head.map((h, k) => Math.max(h.length, ...rows.map((row) => row[k].length)));
  const line = (cells: string[]) => cells.map((s, k) => (k < 2 ? s.padEnd(w[k]) : s.padStart(w[k]))).join('  ');
  out.push(line(head), '-'.repeat(w.reduce((a, b) => a + b + 2, -2)), ...rows.map(line));
  out.push('(procs = live processes in the node groups at the generate reply; RSS in MiB; "after" = 0 nodes, once the reset reply came and node connections closed; heap = V8 heap in use after a forced full GC at that point, MiB; left@reply = leftovers at the reset reply, leaked = still there after the settle window)');
  out.push('');
  out.push(`leaked processes:   ${r.leaked}  (cycles ${r.cycles.reduce((a, c) => a + c.leaked, 0)}, idle ${r.idle.leaked}, after manager exit ${r.afterStop.leaked})`);
  out.push(`manager fds:        start ${r.fds.start}, end ${r.fds.end} (growth ${r.fds.growth >= 0 ? '+' : ''}${r.fds.growth}, tolerance ${o.fdTolerance}; peak ${r.fds.max})`);
  out.push(`manager RSS, MiB:   start ${mib(r.rss.startKiB)}, after warm-up (cycle ${r.rss.warmupCycles}) ${mib(r.rss.afterWarmupKiB)}, end ${mib(r.rss.endKiB)} (${r.rss.growthPct >= 0 ? '+' : ''}${r.rss.growthPct}% vs after warm-up, ${r.rss.flat ? 'flat' : 'NOT flat'}; trend after warm-up ${r.rss.slopeKiBPerCycle} KiB/cycle; peak ${mib(r.rss.peakKiB)})`);
  const h = r.heap;
  if (h.endKiB !== null) {
    out.push(`manager live heap:  start ${heap(h.startKiB)}, after warm-up ${heap(h.afterWarmupKiB)}, end ${heap(h.endKiB)} MiB (${(h.growthPct ?? 0) >= 0 ? '+' : ''}${h.growthPct}% vs after warm-up; trend ${h.slopeKiBPerCycle} KiB/cycle); external ${heap(h.externalStartKiB)} -> ${heap(h.externalEndKiB)} MiB (after a forced GC)`);
  }
  out.push(`manager CPU idle:   ${r.idle.cpuPct}% of a core over ${r.idle.seconds} s with ${r.idle.nodes} connected nodes (worst second ${r.idle.cpuMaxSecondPct}%; stats every ${o.statsIntervalMs} ms)`);
  const ex = r.afterStop.exit;
  out.push(`manager exit:       code ${ex.code}${ex.signal ? ` (${ex.signal})` : ''} ${ex.ms} ms after SIGTERM${ex.forced ? ', SIGKILLed' : ''}`);
  out.push(`time, s:            start ${r.phases.start}, cycles ${r.phases.cycles} (${r.phases.perCycleMean} per cycle), idle ${r.phases.idle}, stop ${r.phases.stop}, total ${r.phases.total}`);
  for (const wn of r.warnings) out.push(`warning: ${wn}`);
  for (const f of r.failures) out.push(`FAIL: ${f}`);
  out.push(`verdict: ${r.ok ? 'PASS' : 'FAIL'} (${r.leaked} leaked, fds ${r.fds.growth > o.fdTolerance ? 'grew' : 'flat'}, RSS ${r.rss.flat ? 'flat' : 'not flat'})`);
  return out.join('\n');
}

// ---- command line -------------------------------------------------------------------

const USAGE = `usage: npm run soak -- [--nodes N] [--cycles N] [--connected-every K] [--idle-nodes N] [--idle-s S]
                      [--fd-tolerance N] [--rss-tolerance-pct P] [--rss-warmup-cycles N] [--settle-ms MS] [--stats-interval-ms MS] [--no-heap-probe] [--keep-tmp]
defaults: --nodes 1000 --cycles 20 --connected-every 2 --idle-nodes 200 --idle-s 60 --fd-tolerance 2 --rss-tolerance-pct 20
each also from the environment: SOAK_NODES, SOAK_CYCLES, SOAK_CONNECTED_EVERY, SOAK_IDLE_NODES, SOAK_IDLE_S, ...`;

const NUMERIC: Record<string, keyof SoakOptions> = {
  nodes: 'nodes',
  cycles: 'cycles',
  'connected-every': 'connectedEvery',
  'idle-nodes': 'idleNodes',
  'idle-s': 'idleS',
  'fd-tolerance': 'fdTolerance',
  'rss-tolerance-pct': 'rssTolerancePct',
  'rss-warmup-cycles': 'rssWarmupCycles',
  'settle-ms': 'settleMs',
  'stats-interval-ms': 'statsIntervalMs',
};

export function parseArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): Partial<SoakOptions> {
  const opts: Record<string, unknown> = {};
  const setNum = (flag: string, value: string | undefined) => {
    const n = Number(value);
    if (value === undefined || value === '' || !Number.isFinite(n) || n < 0) throw new Error(`--${flag} needs a non-negative number, not ${JSON.stringify(value)}`);
    opts[NUMERIC[flag]] = n;
  };
  for (const flag of Object.keys(NUMERIC)) {
    const v = env[`SOAK_${flag.toUpperCase().replace(/-/g, '_')}`];
    if (v !== undefined) setNum(flag, v);
  }
  if (env.SOAK_KEEP_TMP) opts.keepTmp = true;
  for (let k = 0; k < argv.length; k++) {
    const a = argv[k];
    if (a === '--keep-tmp') {
      opts.keepTmp = true;
      continue;
    }
    if (a === '--no-heap-probe') {
      opts.heapProbe = false;
      continue;
    }
    if (a === '-h' || a === '--help') throw new Error('help');
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (!m || !(m[1] in NUMERIC)) throw new Error(`unknown argument ${a}`);
    setNum(m[1], m[2] ?? argv[++k]);
  }
  if (opts.nodes === 0 || opts.idleNodes === 0) throw new Error('--nodes and --idle-nodes must be at least 1');
  return opts as Partial<SoakOptions>;
}

async function main(): Promise<void> {
  let parsed: Partial<SoakOptions>;
  try {
    parsed = parseArgs(process.argv.slice(2));
  } catch (err) {
    const msg = (err as Error).message;
    process.stderr.write(msg === 'help' ? `${USAGE}\n` : `soak: ${msg}\n${USAGE}\n`);
    process.exitCode = msg === 'help' ? 0 : 2;
    return;
  }
  process.on('SIGINT', () => {
    process.stderr.write('soak: SIGINT, stopping the manager and cleaning up\n');
    void Promise.all([...running].map((c) => c())).finally(() => process.exit(130));
  });
  const report = await soak({ ...parsed, resultsFile: path.join(RESULTS_DIR, 'soak-latest.json'), log: (msg) => process.stderr.write(`${msg}\n`) });
  process.stdout.write(`${formatReport(report)}\n`);
  process.stdout.write(`wrote ${path.relative(process.cwd(), path.join(RESULTS_DIR, 'soak-latest.json'))}\n`);
  if (!report.ok) process.exitCode = 1;
}

if (require.main === module) {
  main().catch((err: Error) => {
    process.stderr.write(`soak failed: ${err.stack ?? err}\n`);
    process.exitCode = 1;
  });
}
