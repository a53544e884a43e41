// The timeline of each generation: <log-dir>/timeline/gen-<G>.jsonl, one JSON object
// per line (types in src/protocol.ts, TimelineLine): a header, then every stats sample
// with per-node CPU and RSS, every node phase change with its latency, and `ready`.
// Each line carries `time` (ms since epoch) and `mono` (ms of CLOCK_MONOTONIC, for
// intervals and ordering: it does not jump with the wall clock).
//
// A generation's file starts with its first line (a generate with n = 0 writes none)
// and gets samples while the generation has live nodes. Lines are batched: a sample
// flushes at once, node changes within FLUSH_MS (1000 nodes starting is one or a few
// writes, not 1000). Writes go through AppendLog: one open-append-close per batch, so
// a deleted log directory costs one warning and writing resumes once it exists again
// (the `timeline` subdirectory is re-created by itself; a file that lost its start
// gets its header again).

import { existsSync, mkdir } from 'node:fs';
import path from 'node:path';
import type { NodeView } from '../machines/node';
import { AppendLog } from './appendlog';
import { DEFAULT_CHUNK_BYTES, FileChunkError, readChunk } from './filechunk';
import type { Logger } from './logger';
import type {
  ChaosAction, ManagerIdentity, NodePhase, ReadyEvent, StatsEvent, TimelineHeader, TimelineLine, TimelineNodeChange, TimelineParams,
  TimelineResult, TimelineSample, WireError,
} from './protocol';
import { monoMs } from './sampler';

/** Node changes wait at most this long for a write. */
const FLUSH_MS = 200;
/** A batch this large is written at once. */
const FLUSH_BYTES = 1 << 20;

export interface TimelineOptions {
  logDir: string;
  logger: Logger;
  /** Who writes the file (its address is known once the server listens). */
  manager: () => ManagerIdentity;
  /** --stats-interval-ms, recorded in each header. */
  intervalMs: number;
  /** The current generation and its generate's n. */
  current: () => { generation: number; target: number };
}

export class Timeline {
  readonly dir: string;
  private readonly log: AppendLog;
  /** Generation of the file being written, 0 before the first. */
  private generation = 0;
  private header = '';
  /** mono of each node's last change in the current generation, by index. */
  private lastChange: number[] = [];
  /** Lines not yet written, per file, oldest file first. */
  private pending = new Map<string, string[]>();
  private pendingBytes = 0;
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> | null = null;

  constructor(private readonly opts: TimelineOptions) {
    this.dir = path.join(opts.logDir, 'timeline');
    this.log = new AppendLog(opts.logger, 'timeline', 'node samples and events are not being recorded to it (stats events and the stats command are unaffected)');
    this.reopen();
  }

  fileOf(generation: number): string {
    return path.join(this.dir, `gen-${generation}.jsonl`);
  }

  /** A stats sample (`mono` from the sampler): written while its generation has live nodes. */
  sample(event: StatsEvent, mono: number): void {
    if (event.generation === 0 || event.nodes.length === 0) return;
    this.enter(event.generation, event.time, mono);
    const line: TimelineSample = { type: 'sample', time: event.time, mono, generation: event.generation, host: event.host, nodes: event.nodes };
    this.add(line);
    void this.flush();
  }

  /** A node's phase change, as the supervisor reports it (synchronously, so the timestamps are the change's). */
  phase(view: NodeView, from: NodePhase): void {
    const mono = monoMs();
    const time = Date.now();
    this.enter(view.generation, time, mono);
    // Latencies are kept for the current generation only (an older one's late line gets none).
    const current = view.generation === this.generation;
    const last = current ? this.lastChange[view.index] : undefined;
    if (current) this.lastChange[view.index] = mono;
    const line: TimelineNodeChange = {
      type: 'node',
      time,
      mono,
      generation: view.generation,
      index: view.index,
      pid: view.pid,
      from,
      to: view.phase,
      latencyMs: last === undefined ? null : Math.round((mono - last) * 1000) / 1000,
    };
    if (view.phase === 'killed') Object.assign(line, { exitCode: view.exitCode, signal: view.signal, outcome: view.outcome });
    if (view.failure) line.failure = view.failure;
    this.add(line);
    this.soon();
  }

  /** A chaos run's start, kill or end (src/chaos.ts). */
  chaos(action: ChaosAction): void {
    const time = Date.now();
    const mono = monoMs();
    this.enter(action.generation, time, mono);
    this.add({ type: 'chaos', time, mono, ...action });
    this.soon();
  }

  ready(event: ReadyEvent): void {
    if (event.n === 0) return;
    const time = Date.now();
    const mono = monoMs();
    this.enter(event.generation, time, mono);
    this.add({ type: 'ready', time, mono, generation: event.generation, n: event.n });
    this.soon();
  }

  /** Resolves once every line added so far is written (or its write failed). */
  async flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    while (this.writing) await this.writing;
    if (this.pending.size === 0) return;
    this.writing = this.write().finally(() => (this.writing = null));
    await this.writing;
  }

  /** SIGHUP: re-creates the directory if it was deleted (files are opened per batch, so a moved one needs nothing). */
  reopen(): void {
    this.log.makeDir(this.dir, this.fileOf(this.generation));
  }

  /** Writes what is pending; nothing is added after this. */
  close(): Promise<void> {
    return this.flush();
  }

  /** The `timeline` command: a page of a generation's file, in whole lines. */
  async page(params: TimelineParams): Promise<{ result: TimelineResult } | { error: WireError }> {
    const current = this.opts.current().generation;
    const generation = params.generation ?? current;
    await this.flush();
    try {
      const chunk = await readChunk(this.fileOf(generation), params.offset ?? 0, params.maxBytes ?? DEFAULT_CHUNK_BYTES, { wholeLines: true });
      return { result: { generation, current: generation === current, ...chunk } };
    } catch (err) {
      if (!(err instanceof FileChunkError)) throw err;
      if (err.code === 'ENOENT') {
        const why = generation === 0 || generation > current
          ? `there is no generation ${generation} yet (the current one is ${current})`
          : `generation ${generation} has no timeline here (a generation with no node writes none; or ${this.dir} was deleted or cleaned)`;
        return { error: { code: 'BAD_ARGUMENT', message: `${why}; the manager keeps one file per generation in ${this.dir}` } };
      }
      if (err.code === 'RANGE') return { error: { code: 'BAD_ARGUMENT', message: err.message } };
      return { error: { code: 'INTERNAL', message: `${err.message}; check the permissions of ${this.dir}` } };
    }
  }

  private add(line: TimelineLine): void {
    const text = JSON.stringify(line);
    const file = this.fileOf(line.generation);
    let lines = this.pending.get(file);
    if (!lines) this.pending.set(file, (lines = []));
    lines.push(text);
    this.pendingBytes += text.length + 1;
  }

  /** The first line of a newer generation starts its file with a header. */
  private enter(generation: number, time: number, mono: number): void {
    if (generation <= this.generation) return;
    this.generation = generation;
    this.lastChange = [];
    const { target } = this.opts.current();
    const header: TimelineHeader = { type: 'header', format: 1, generation, n: target, time, mono, manager: this.opts.manager(), intervalMs: this.opts.intervalMs };
    this.header = JSON.stringify(header);
    this.pending.set(this.fileOf(generation), [this.header]);
    this.pendingBytes += this.header.length + 1;
  }

  /** Schedules a flush for node changes: soon, or now if the batch is large. */
  private soon(): void {
    if (this.pendingBytes >= FLUSH_BYTES) {
      void this.flush();
      return;
    }
    if (this.timer) return;
    this.timer = setTimeout(() => void this.flush(), FLUSH_MS);
    this.timer.unref();
  }

  private async write(): Promise<void> {
    const batches = this.pending;
    this.pending = new Map();
    this.pendingBytes = 0;
    // Only the subdirectory is re-created here: a deleted --log-dir is the operator's to re-create (or SIGHUP's).
    if (!existsSync(this.dir)) await new Promise((resolve) => mkdir(this.dir, resolve));
    for (const [file, lines] of batches) {
      // The current file lost (deleted, or its directory was): it starts again with its header.
      if (file === this.fileOf(this.generation) && lines[0] !== this.header && !existsSync(file)) lines.unshift(this.header);
      await this.log.append(file, `${lines.join('\n')}\n`);
    }
    // Lines added while writing wait for their own timer or sample.
    if (this.pending.size > 0) this.soon();
  }
}
