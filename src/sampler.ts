// The one owner of CPU/memory samples in the manager: host CPU per core and in
// total (busy, steal, iowait), load averages, host memory, and CPU/RSS of each
// live node, every `intervalMs`. Published as 'sample' events (a StatsEvent, ready
// to send to subscribers, with the monotonic time of its reading), kept for
// `latest()` (the `stats` command), and its host part appended to a JSONL log.
//
// Where the numbers come from, and why:
// - Host CPU: deltas of /proc/stat between two samples. This is the same
//   quantity as systeminformation's currentLoad().cpus[].load / .currentLoad,
//   but si.currentLoad() is not used, on purpose (measured with si 5.33.26):
//     * on Linux each call runs `execSync('cat /proc/stat | grep cpu')` through
//       a shell: ~6 ms with the event loop blocked, plus three child processes,
//       every sample: the kind of per-sample spawn we avoid for processes too;
//     * calls less than 200 ms apart return the previous result unchanged, so
//       with --stats-interval-ms below 200 the first "sample" would be the
//       since-boot average and later ones would repeat themselves;
//     * its previous reading is module-global, so any second caller distorts
//       the window.
//   Reading /proc/stat ourselves costs one small file read, has no minimum
//   window and no shared state. Nothing in the manager should call
//   si.currentLoad().
//   Busy = user + nice + system + irq + softirq + steal; idle = idle + iowait
//   (guest time is already counted inside user/nice). Steal and iowait are also
//   reported on their own (si reports steal as 0).
// - Load averages: /proc/loadavg.
// - Host memory: si.mem() (an async read of /proc/meminfo, < 1 ms).
//   memUsed = total - available.
// - Nodes: /proc/<pid>/stat through pidstat.ts (utime+stime ticks, RSS pages,
//   from a descriptor kept open per node), never si.processes()/processLoad(),
//   which run `ps` and a `cat` per pid on every call. Read in slices that yield
//   to the event loop (NODES_PER_SLICE), each node's CPU over its own window,
//   from its read in the previous sample to its read in this one. Where the
//   nodes run in cgroups, the run's cgroup tells in one read whether any of them
//   ran since the last sample; if none did, their readings are carried forward
//   (1000 sleeping nodes then cost one read, not 1000). A node that leaves the
//   cgroup (moves itself elsewhere) would run unseen by that counter: each full
//   read after carried ones checks that the nodes' own CPU since the last full
//   read fits in the counter's, and if not, stops carrying for that generation.
// Nothing here starts a process per sample (getconf runs once per process).

import { execFile } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as si from 'systeminformation';
import { AppendLog } from './appendlog';
import type { Logger } from './logger';
import { PidStats } from './pidstat';
import type { HostStats, NodeStats, StatsEvent, StatsResult } from './protocol';

/** The current generation's live nodes, as the sampler asks for them at each sample. */
export interface LiveNodes { generation: number; nodes: { pid: number; index: number }[] }

export interface SamplerOptions {
  /** --stats-interval-ms, default 1000. */
  intervalMs: number;
  /** JSONL log of the host samples (e.g. <log-dir>/stats.jsonl); null = none. */
  logFile: string | null;
  nodes: () => LiveNodes;
  /**
   * CPU time (µs) used so far by all the nodes together, or null when unknown
   * (src/containment.ts, from the run's cgroup). While it does not move, no node
   * ran, and a sample carries each node's last reading forward instead of reading it.
   */
  nodesCpuUsec?: () => number | null;
  logger: Logger;
}

/** Cumulative ticks of one CPU line of /proc/stat (`cpu`, `cpu0`, ...). */
interface CpuTicks { name: string; busy: number; steal: number; iowait: number; total: number }

/** Host counters at one instant; a published sample is the difference of two. */
interface Reading {
  /** process.hrtime.bigint() when the counters were read. */
  mono: bigint;
  all: CpuTicks;
  cores: CpuTicks[];
}

type Mem = { memUsed: number; memTotal: number };

const round1 = (x: number): number => Math.round(x * 10) / 10;
const round2 = (x: number): number => Math.round(x * 100) / 100;
const clampPercent = (x: number): number => round1(Math.min(100, Math.max(0, x)));

/** Percent of the window's ticks spent in `part` (busy, steal or iowait) on one CPU. */
export function percentOf(part: 'busy' | 'steal' | 'iowait', prev: CpuTicks | undefined, now: CpuTicks): number {
  // No reading of this CPU in the previous sample (a CPU brought online): 0.
  if (!prev || prev.name !== now.name) return 0;
  const total = now.total - prev.total;
  // iowait may go backwards on Linux, hence the clamp.
  return total > 0 ? clampPercent(((now[part] - prev[part]) / total) * 100) : 0;
}

/** The `cpu` and `cpuN` lines of the text of /proc/stat, as cumulative ticks. */
export function parseCpuTicks(text: string): { all: CpuTicks; cores: CpuTicks[] } {
  let all: CpuTicks | null = null;
  const cores: CpuTicks[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('cpu')) continue;
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    const f = line.trim().split(/\s+/);
    const v = (i: number): number => Number(f[i]) || 0;
    const iowait = v(5);
    const steal = v(8);
    const busy = v(1) + v(2) + v(3) + v(6) + v(7) + steal;
    const ticks = { name: f[0], busy, steal, iowait, total: busy + v(4) + iowait };
    if (f[0] === 'cpu') all = ticks;
    else cores.push(ticks);
  }
  if (!all || cores.length === 0) throw new Error('/proc/stat has no cpu lines');
  return { all, cores };
}

function readLoadavg(): [number, number, number] {
  const f = readFileSync('/proc/loadavg', 'latin1').split(' ');
  return [Number(f[0]), Number(f[1]), Number(f[2])];
}

function getconf(name: string, fallback: number): Promise<number> {
  return new Promise((resolve) => {
    execFile('getconf', [name], { timeout: 2000 }, (err, stdout) => {
      const n = Number(String(stdout).trim());
      resolve(!err && Number.isInteger(n) && n > 0 ? n : fallback);
    });
  });
}

// Read once per process (they cannot change while it runs).
let sysconf: Promise<{ clkTck: number; pageSize: number }> | null = null;
function readSysconf(): Promise<{ clkTck: number; pageSize: number }> {
  sysconf ??= Promise.all([getconf('CLK_TCK', 100), getconf('PAGESIZE', 4096)]).then(([clkTck, pageSize]) => ({ clkTck, pageSize }));
  return sysconf;
}

/**
 * Nodes read in one go before a sample yields to the event loop. Read at once,
 * 1000 nodes held the loop 12-17 ms once a second (the longest delay of a 1 ms
 * timer), and every request that arrived meanwhile waited that long; in slices
 * of 100 the longest delay while sampling, 5.2-5.6 ms, is what the development
 * VM shows with no sampling at all (5.0-5.8 ms).
 */
const NODES_PER_SLICE = 100;

/**
 * Samples in a row that may carry the nodes' readings forward. RSS can change
 * without its process running (reclaim and swap shrink it, khugepaged may grow
 * it), so every node is read at least this often plus one.
 */
const MAX_CARRIED = 9;

/** Distinct sampling-error messages logged at most; past this, new ones are dropped. */
const MAX_REMEMBERED_ERRORS = 100;

/** A monotonic hrtime reading in ms (µs resolution), the unit of the logs' `mono`. */
export const monoMs = (t: bigint = process.hrtime.bigint()): number => Number(t / 1000n) / 1000;

export class Sampler extends EventEmitter<{ sample: [StatsEvent, number] }> {
  private readonly opts: SamplerOptions;
  private clkTck = 100;
  private pageSize = 4096;
  private timer: NodeJS.Timeout | null = null;
  private started = false;
  private stopped = false;
  /** The sample in flight, if any (ticks never overlap: a busy tick is skipped). */
  private inFlight: Promise<void> | null = null;
  /** Host counters of the last published sample (or of the baseline before the first). */
  private prev: Reading | null = null;
  /** performance.now() when `prev` was read: where a node first seen in a window starts its own. */
  private prevAt = 0;
  /** Per-node counters; each entry's base is its ticks at `prev`. */
  private readonly pids = new PidStats();
  /** Memory read with the baseline: used by latest() before the first sample. */
  private baselineMem: Mem | null = null;
  private published: StatsResult | null = null;
  /** nodesCpuUsec() as of the last sample, and how many samples in a row have carried readings forward. */
  private lastNodesCpu: number | null = null;
  private carried = 0;
  /** A generation whose nodes ran outside the counter: its nodes are read every sample. */
  private uncounted: number | null = null;
  /** Over the nodes read (not carried, not new) in the sample in flight: their CPU ticks since their last read, and how many moved. */
  private readTicks = 0;
  private readMoved = 0;
  private readonly errorsSeen = new Set<string>();
  private readonly log: AppendLog;

  constructor(opts: SamplerOptions) {
    super();
    if (!Number.isFinite(opts.intervalMs) || opts.intervalMs <= 0) {
      throw new RangeError(`Sampler: intervalMs must be a positive number, got ${opts.intervalMs}`);
    }
    this.opts = opts;
    this.log = new AppendLog(opts.logger, 'stats log', 'host CPU samples are not being recorded to it (stats events, the stats command and the timeline are unaffected)');
  }

  /**
   * Takes the baseline reading at once (not published: a first reading can
   * only give since-boot averages), then samples every intervalMs with an
   * unref'd timer. Rejects only if the baseline itself cannot be read.
   */
  async start(): Promise<void> {
    if (this.started) throw new Error('Sampler.start() called twice');
    this.started = true;
    ({ clkTck: this.clkTck, pageSize: this.pageSize } = await readSysconf());
    this.reopen();
    const mem = await this.readMem();
    const { now } = this.measure(mem);
    this.pids.commit();
    this.prev = now;
    this.prevAt = performance.now();
    this.baselineMem = mem;
    if (this.stopped) return;
    this.timer = setInterval(() => this.tick(), this.opts.intervalMs);
    this.timer.unref();
  }

  /**
   * The last published sample. Before the first one, it is computed fresh,
   * synchronously, over the window from start()'s baseline to now (shorter than
   * one interval, so coarser: CPU time is counted in clock ticks, 10 ms at 100 Hz), with the
   * memory read at the baseline; this never touches the periodic windows. It is
   * never a since-boot average. Throws if start() has not completed.
   */
  latest(): StatsResult {
    if (this.published) return this.published;
    if (!this.prev || !this.baselineMem) throw new Error('Sampler.latest() called before start() completed');
    return this.measure(this.baselineMem).result;
  }

  /** Clears the timer, waits for a sample in flight and its log line, closes the per-node descriptors. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.inFlight;
    this.pids.closeAll();
  }

  /**
   * SIGHUP (log rotation). The stats log is opened per line, so a moved
   * stats.jsonl is left alone from the next sample on, with nothing to reopen;
   * this re-creates the log directory if it was deleted. A failure is reported
   * (once, as for a failed write), and the next sample tries the file again.
   */
  reopen(): void {
    if (this.opts.logFile) this.log.makeDir(path.dirname(this.opts.logFile), this.opts.logFile);
  }

  private tick(): void {
    if (this.inFlight) {
      this.opts.logger.debug('stats sample skipped: the previous one is still running');
      return;
    }
    this.inFlight = this.sampleOnce().finally(() => {
      this.inFlight = null;
    });
  }

  private async sampleOnce(): Promise<void> {
    let event: StatsEvent;
    let mono: number;
    try {
      const mem = await this.readMem();
      if (this.stopped || !this.prev) return;
      const time = Date.now();
      const at = performance.now();
      // Read before any node: if it has not moved since the last sample's (read
      // before that sample's nodes), none of them ran in between.
      const nodesCpu = this.opts.nodesCpuUsec?.() ?? null;
      const { result, now, live } = this.begin(mem);
      const carry = nodesCpu !== null && nodesCpu === this.lastNodesCpu && this.carried < MAX_CARRIED && this.uncounted !== live.generation;
      this.readTicks = 0;
      this.readMoved = 0;
      for (let from = 0; from < live.nodes.length; from += NODES_PER_SLICE) {
        if (from > 0) {
          await new Promise((resolve) => setImmediate(resolve));
          if (this.stopped) return;
        }
        this.readNodes(live, from, Math.min(live.nodes.length, from + NODES_PER_SLICE), result.nodes, carry);
      }
      if (!carry && this.carried > 0 && this.lastNodesCpu !== null) {
        // Read again now: every node's window (from its last read, after the last counter
        // reading, to its read in this sample) lies inside the counter's.
        const after = this.opts.nodesCpuUsec?.() ?? null;
        if (after !== null) this.checkCounted(live.generation, after - this.lastNodesCpu);
      }
      this.pids.commit();
      this.lastNodesCpu = nodesCpu;
      this.carried = carry ? this.carried + 1 : 0;
      this.prev = now;
      this.prevAt = at;
      this.published = result;
      event = { event: 'stats', time, ...result };
      mono = monoMs(now.mono);
    } catch (err) {
      this.warnOnce(`stats sample skipped: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    try {
      this.emit('sample', event, mono);
    } catch (err) {
      // A listener's bug; the sampler keeps going.
      this.opts.logger.error(`a stats 'sample' listener threw: ${err instanceof Error ? err.stack : String(err)}`);
    }
    if (this.opts.logFile) {
      // The host only: per-node samples go to each generation's timeline.
      const line = JSON.stringify({ time: event.time, mono, generation: event.generation, host: event.host });
      await this.log.append(this.opts.logFile, line + '\n');
    }
  }

  private async readMem(): Promise<Mem> {
    const m = await si.mem();
    if (!(m.total > 0) || !(m.available >= 0)) throw new Error('systeminformation mem() returned no total/available memory');
    return { memUsed: Math.max(0, m.total - m.available), memTotal: m.total };
  }

  /**
   * Reads the host counters and every live node at once, and computes the window
   * since `prev` (the baseline's own window is empty). Per-node windows move on
   * only with `pids.commit()`. The periodic samples read the nodes in slices instead.
   */
  private measure(mem: Mem): { result: StatsResult; now: Reading } {
    const { result, now, live } = this.begin(mem);
    this.readNodes(live, 0, live.nodes.length, result.nodes);
    return { result, now };
  }

  /**
   * After carried samples: the nodes' own CPU since their last read must fit in what
   * the counter saw over a window that holds all of theirs (give or take a tick per
   * node, as /proc counts in whole ticks). More means some node ran outside the
   * run's cgroup while the samples said it had not: its generation is read in full
   * from now on.
   */
  private checkCounted(generation: number, counterUsec: number): void {
    const slackTicks = this.readMoved + this.clkTck / 10;
    if (this.readTicks - slackTicks <= (counterUsec * this.clkTck) / 1e6) return;
    this.uncounted = generation;
    this.opts.logger.warn(
      `generation ${generation}: nodes used ${Math.round((this.readTicks * 1000) / this.clkTck)} ms of CPU that the run's cgroup did not count ` +
        `(${Math.round(counterUsec / 1000)} ms): some node left its cgroup (e.g. a node started under systemd-run --scope). ` +
        'Its CPU figures since the previous full read were too low; every node of this generation is read every sample from now on',
    );
  }

  /** What every reading starts with: the host counters, and a pass begun over the live nodes (none read yet). */
  private begin(mem: Mem): { result: StatsResult; now: Reading; live: LiveNodes } {
    const { host, now } = this.readHost(mem);
    const live = this.opts.nodes();
    this.pids.beginPass(live.nodes);
    return { result: { generation: live.generation, host, nodes: [] }, now, live };
  }

  /** Host CPU over the window since `prev` (empty before the first), memory, load. */
  private readHost(mem: Mem): { host: HostStats; now: Reading } {
    const mono = process.hrtime.bigint();
    const { all, cores } = parseCpuTicks(readFileSync('/proc/stat', 'latin1'));
    const loadavg = readLoadavg();
    const prev = this.prev ?? { mono, all, cores };
    const host: HostStats = {
      cpus: cores.map((c, i) => percentOf('busy', prev.cores[i], c)),
      load: percentOf('busy', prev.all, all),
      memUsed: mem.memUsed,
      memTotal: mem.memTotal,
      cpusSteal: cores.map((c, i) => percentOf('steal', prev.cores[i], c)),
      steal: percentOf('steal', prev.all, all),
      iowait: percentOf('iowait', prev.all, all),
      loadavg: [round2(loadavg[0]), round2(loadavg[1]), round2(loadavg[2])],
    };
    return { host, now: { mono, all, cores } };
  }

  /**
   * Reads nodes [from, to) of `live` into `out`: each node's CPU over its own
   * window (from its read in the last sample to now), as percent of one core.
   * With `carry` (no node has run since the last sample) a node read before is
   * not read again: its counters are as they were.
   */
  private readNodes({ generation, nodes: live }: LiveNodes, from: number, to: number, out: NodeStats[], carry = false): void {
    const at = performance.now();
    // With no earlier sample (the baseline itself) windows are empty: 0 %.
    const windowStart = this.prev ? this.prevAt : at;
    const msPerTick = 1000 / this.clkTck;
    for (let i = from; i < to; i++) {
      const { pid, index } = live[i];
      let entry;
      try {
        const carried = carry ? this.pids.carry(pid, generation, index, at) : null;
        entry = carried ?? this.pids.read(pid, generation, index, at, windowStart);
        if (entry !== null && carried === null && !entry.fresh && entry.ticks > entry.base) {
          this.readTicks += entry.ticks - entry.base;
          this.readMoved++;
        }
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        this.warnOnce(
          `cannot read /proc/${e.code === 'EMFILE' || e.code === 'ENFILE' ? '<pid>' : pid}/stat (${e.code ?? e.message}); ` +
            `those nodes are missing from stats samples until it works${e.code === 'EMFILE' ? ': the manager is out of descriptors, raise RLIMIT_NOFILE (ulimit -n, LimitNOFILE=)' : ''}`,
        );
        continue;
      }
      // Gone between listing and reading, or a zombie awaiting its reaper: skip.
      if (entry === null) continue;
      const window = entry.at - entry.baseAt;
      // Percent of one core: a multi-threaded node may exceed 100.
      const cpu = window > 0 ? round1(Math.max(0, ((entry.ticks - entry.base) * msPerTick * 100) / window)) : 0;
      out.push({ pid, index, cpu, rss: entry.rssPages * this.pageSize });
    }
  }

  private warnOnce(message: string): void {
    if (this.errorsSeen.has(message) || this.errorsSeen.size >= MAX_REMEMBERED_ERRORS) return;
    this.errorsSeen.add(message);
    this.opts.logger.warn(message);
  }
}
