// The one owner of CPU/memory samples in the manager: host CPU per core and in
// total, host memory, and CPU/RSS of each live node, every `intervalMs`.
// Published as 'sample' events (a StatsEvent, ready to send to subscribers),
// kept for `latest()` (the `stats` command), and appended to a JSONL log.
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
//   (guest time is already counted inside user/nice).
// - Host memory: si.mem() (an async read of /proc/meminfo, < 1 ms).
//   memUsed = total - available.
// - Nodes: /proc/<pid>/stat through proc.ts (utime+stime ticks, RSS pages), never
//   si.processes()/processLoad(), which run `ps` on every call.

import { execFile } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { appendFile, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import * as si from 'systeminformation';
import type { Logger } from './logger';
import { readStat } from './proc';
import type { HostStats, NodeStats, StatsEvent, StatsResult } from './protocol';

export interface SamplerOptions {
  /** --stats-interval-ms, default 1000. */
  intervalMs: number;
  /** JSONL CPU log path (e.g. <log-dir>/stats.jsonl); null = none. */
  logFile: string | null;
  /** Live nodes of the current generation, asked at each sample. */
  nodes: () => { pid: number; index: number }[];
  logger: Logger;
}

/** Cumulative busy/total ticks of one CPU line of /proc/stat (`cpu`, `cpu0`, ...). */
interface CpuTicks { name: string; busy: number; total: number }

interface ProcReading { ticks: number; startTicks: number; rssPages: number }

/** Raw counters at one instant; a published sample is the difference of two. */
interface Reading {
  /** process.hrtime.bigint() when the counters were read. */
  mono: bigint;
  all: CpuTicks;
  cores: CpuTicks[];
  procs: Map<number, ProcReading>;
}

const round1 = (x: number): number => Math.round(x * 10) / 10;
const clampPercent = (x: number): number => round1(Math.min(100, Math.max(0, x)));

function busyPercent(prev: CpuTicks | undefined, now: CpuTicks): number {
  // No reading of this CPU in the previous sample (a CPU brought online): 0.
  if (!prev || prev.name !== now.name) return 0;
  const total = now.total - prev.total;
  // iowait may go backwards on Linux, hence the clamp.
  return total > 0 ? clampPercent(((now.busy - prev.busy) / total) * 100) : 0;
}

/** The `cpu` and `cpuN` lines of /proc/stat, as cumulative busy/total ticks. */
function readCpuTicks(): { all: CpuTicks; cores: CpuTicks[] } {
  let all: CpuTicks | null = null;
  const cores: CpuTicks[] = [];
  for (const line of readFileSync('/proc/stat', 'latin1').split('\n')) {
    if (!line.startsWith('cpu')) continue;
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    const f = line.trim().split(/\s+/);
    const v = (i: number): number => Number(f[i]) || 0;
    const idle = v(4) + v(5);
    const busy = v(1) + v(2) + v(3) + v(6) + v(7) + v(8);
    const ticks = { name: f[0], busy, total: busy + idle };
    if (f[0] === 'cpu') all = ticks;
    else cores.push(ticks);
  }
  if (!all || cores.length === 0) throw new Error('/proc/stat has no cpu lines');
  return { all, cores };
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

/** Distinct sampling-error messages logged at most; past this, new ones are dropped. */
const MAX_REMEMBERED_ERRORS = 100;

export class Sampler extends EventEmitter<{ sample: [StatsEvent] }> {
  private readonly opts: SamplerOptions;
  private clkTck = 100;
  private pageSize = 4096;
  private timer: NodeJS.Timeout | null = null;
  private started = false;
  private stopped = false;
  /** The sample in flight, if any (ticks never overlap: a busy tick is skipped). */
  private inFlight: Promise<void> | null = null;
  /** Counters of the last published sample (or of the baseline before the first). */
  private prev: Reading | null = null;
  /** Memory read with the baseline: used by latest() before the first sample. */
  private baselineMem: { memUsed: number; memTotal: number } | null = null;
  private published: StatsResult | null = null;
  private readonly errorsSeen = new Set<string>();
  private logBroken = false;

  constructor(opts: SamplerOptions) {
    super();
    if (!Number.isFinite(opts.intervalMs) || opts.intervalMs <= 0) {
      throw new RangeError(`Sampler: intervalMs must be a positive number, got ${opts.intervalMs}`);
    }
    this.opts = opts;
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
    if (this.opts.logFile) {
      try {
        mkdirSync(path.dirname(this.opts.logFile), { recursive: true });
      } catch (err) {
        this.logWriteFailed(err as NodeJS.ErrnoException);
      }
    }
    const mem = await this.readMem();
    this.prev = this.read(this.opts.nodes());
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
    const nodes = this.opts.nodes();
    return this.diff(this.prev, this.read(nodes), this.baselineMem, nodes);
  }

  /** Clears the timer, waits for a sample in flight and its log line (nothing is kept open). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.inFlight;
  }

  /**
   * SIGHUP (log rotation). The stats log is opened per line, so a moved
   * stats.jsonl is left alone from the next sample on, with nothing to reopen;
   * this re-creates the log directory if it was deleted. A failure is reported
   * (once, as for a failed write), and the next sample tries the file again.
   */
  reopen(): void {
    if (!this.opts.logFile) return;
    try {
      mkdirSync(path.dirname(this.opts.logFile), { recursive: true });
    } catch (err) {
      this.logWriteFailed(err as NodeJS.ErrnoException);
    }
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
    let mono: bigint;
    try {
      const mem = await this.readMem();
      if (this.stopped || !this.prev) return;
      const nodes = this.opts.nodes();
      const time = Date.now();
      const now = this.read(nodes);
      const result = this.diff(this.prev, now, mem, nodes);
      this.prev = now;
      this.published = result;
      event = { event: 'stats', time, ...result };
      mono = now.mono;
    } catch (err) {
      this.warnOnce(`stats sample skipped: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    try {
      this.emit('sample', event);
    } catch (err) {
      // A listener's bug; the sampler keeps going.
      this.opts.logger.error(`a stats 'sample' listener threw: ${err instanceof Error ? err.stack : String(err)}`);
    }
    if (this.opts.logFile) {
      const line = JSON.stringify({ time: event.time, mono: Number(mono) / 1e6, host: event.host, nodes: event.nodes });
      await this.appendLog(this.opts.logFile, line + '\n');
    }
  }

  private async readMem(): Promise<{ memUsed: number; memTotal: number }> {
    const m = await si.mem();
    if (!(m.total > 0) || !(m.available >= 0)) throw new Error('systeminformation mem() returned no total/available memory');
    return { memUsed: Math.max(0, m.total - m.available), memTotal: m.total };
  }

  /** Raw counters for the host and for each listed pid that is still alive. */
  private read(nodes: { pid: number }[]): Reading {
    const mono = process.hrtime.bigint();
    const { all, cores } = readCpuTicks();
    const procs = new Map<number, ProcReading>();
    for (const { pid } of nodes) {
      const st = readStat(pid);
      // Gone between listing and reading (or a zombie awaiting its reaper): skip.
      if (!st || st.state === 'Z' || st.state === 'X' || !Number.isFinite(st.cpuTicks)) continue;
      procs.set(pid, { ticks: st.cpuTicks, startTicks: st.startTicks, rssPages: st.rssPages });
    }
    return { mono, all, cores, procs };
  }

  private diff(prev: Reading, now: Reading, mem: { memUsed: number; memTotal: number }, nodes: { pid: number; index: number }[]): StatsResult {
    const host: HostStats = {
      cpus: now.cores.map((c, i) => busyPercent(prev.cores[i], c)),
      load: busyPercent(prev.all, now.all),
      memUsed: mem.memUsed,
      memTotal: mem.memTotal,
    };
    const seconds = Number(now.mono - prev.mono) / 1e9;
    const out: NodeStats[] = [];
    for (const { pid, index } of nodes) {
      const cur = now.procs.get(pid);
      if (!cur) continue;
      const old = prev.procs.get(pid);
      let cpu = 0;
      // No previous reading (new node), or the pid was reused by another process: 0.
      if (old && old.startTicks === cur.startTicks) {
        if (seconds > 0) cpu = round1(Math.max(0, ((cur.ticks - old.ticks) / this.clkTck / seconds) * 100));
      }
      // Percent of one core: a multi-threaded node may exceed 100.
      out.push({ pid, index, cpu, rss: cur.rssPages * this.pageSize });
    }
    return { host, nodes: out };
  }

  /**
   * One open-append-close per line rather than a kept-open stream: with an open
   * fd, deleting the log directory fails nothing and the lines vanish silently.
   * A failure is warned about once; writing resumes (with a note) once it works.
   */
  private appendLog(file: string, text: string): Promise<void> {
    return new Promise((resolve) => {
      appendFile(file, text, (err) => {
        if (err) {
          this.logWriteFailed(err);
        } else if (this.logBroken) {
          this.logBroken = false;
          this.opts.logger.info(`stats log ${file} is writable again; CPU samples are being appended to it again`);
        }
        resolve();
      });
    });
  }

  private logWriteFailed(err: NodeJS.ErrnoException): void {
    if (this.logBroken) return;
    this.logBroken = true;
    const file = this.opts.logFile;
    const dir = file ? path.dirname(file) : '';
    const hint =
      err.code === 'ENOENT'
        ? `the directory ${dir} no longer exists; recreate it (mkdir -p ${dir}) and writing resumes by itself`
        : err.code === 'ENOSPC' || err.code === 'EDQUOT'
          ? `the disk is full; free space on the file system holding ${dir} and writing resumes by itself`
          : `check that ${file} can be written (permissions, free space); writing resumes by itself once it can`;
    this.opts.logger.warn(
      `cannot write the stats log ${file} (${err.code ?? 'error'}: ${err.message}); CPU samples are not being recorded to it ` +
        `(stats events and the stats command are unaffected). To fix: ${hint}. This is reported once.`,
    );
  }

  private warnOnce(message: string): void {
    if (this.errorsSeen.has(message) || this.errorsSeen.size >= MAX_REMEMBERED_ERRORS) return;
    this.errorsSeen.add(message);
    this.opts.logger.warn(message);
  }
}
