// Node output: each node's stdout and stderr go straight to its own file,
// <log-dir>/nodes/gen-<G>/node-<I>.log, through a descriptor the node holds (no
// pipe through the manager: a chatty node never waits on the manager, and the
// manager's memory does not grow with what nodes write). This file owns those
// files: opening them, size-based rotation, and reading them back (the `logs`
// command, and the last lines of a node that exited on its own).
//
// Rotation is copy-truncate, done by the manager: the node opened its file with
// O_APPEND, so after a truncation it goes on writing at offset 0 (without
// O_APPEND it would write at its old offset and leave a sparse file). The bulk
// is copied in the kernel off the event loop; the last stretch and the
// truncation are one synchronous step, so what a node appends between that last
// read and the truncation (the next system call) is lost. A pipe would lose
// nothing, but then a node blocks whenever the manager is slow to read, or the
// manager buffers without bound: this module exists to avoid exactly that.
//
// Offsets are positions in a node's whole output: bytes rotated out to
// node-<I>.log.1 keep theirs, so a reader following a node (`herd logs
// --follow`) continues across a rotation without repeating or skipping.

import { constants, fstatSync, Stats, ftruncateSync, mkdirSync, openSync, readSync, renameSync, statSync, truncateSync, writeSync } from 'node:fs';
import { copyFile, FileHandle, open, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { FileChunkError, readChunk } from './filechunk';
import type { Logger } from './logger';
import { LOGS_MAX_BYTES, LogsParams, LogsResult, WireError } from './protocol';

export const NODE_LOG_DEFAULTS = {
  /** --node-log-max-bytes: a node's file is rotated once it grows past this (0: never). */
  maxBytes: 10 * 1024 * 1024,
  /**
   * How often file sizes are checked (HERD_NODE_LOG_CHECK_MS). A file that stops
   * growing is checked less and less often, down to every QUIET_MAX_SKIP + 1 checks.
   */
  checkMs: 1000,
} as const;

/**
 * Checks a quiet file may skip in a row. A stat of every file at every check was
 * about 5 ms of CPU a second with 1000 mostly silent nodes; with the backoff a check
 * of 1000 quiet files costs 0.2-0.33 ms (npm run bench -- --only output), and a node
 * that starts writing after a long silence is seen at most 8 checks later (as is
 * a deleted file of a quiet node).
 */
const QUIET_MAX_SKIP = 7;

/** What the last lines of a node that exited on its own are read from, and how many are kept. */
const TAIL_BYTES = 4096;
const TAIL_LINES = 5;
const TAIL_LINE_CHARS = 160;
/** Tails read at once (1000 nodes crashing together must not open 1000 files at once). */
const TAIL_READS = 8;
/** Event-loop time one slice of the size check may take before yielding. */
const SLICE_MS = 5;
/** The copy buffer; the synchronous last step of a rotation reads at most SYNC_READS of it. */
const SYNC_COPY_BYTES = 256 * 1024;
const SYNC_READS = 16;
/** Generations whose files `logs` serves: the current one and the one before. */
const KEPT_GENERATIONS = 2;

/** One node's output file, from its start until its generation is two generations old. */
export interface OutputFile {
  generation: number;
  index: number;
  file: string;
  /** The inode the node was given: a file at the same path with another inode is not its output. */
  dev: number;
  ino: number;
  pid: number;
  alive: boolean;
  /** Bytes rotated out of `file`: the offset of its first byte in the node's whole output. */
  base: number;
  /** Bytes in `file`.1 (the last rotation's). */
  rotated: number;
  /** Counts rotations, so that a read that overlapped one can tell and read again. */
  rotations: number;
  /** The file was deleted or replaced while the node ran: it is no longer read or rotated by path. */
  gone: boolean;
  /** Size at the last check, checks in a row it has not grown, and checks left to skip (see checkOnce). */
  lastSize: number;
  quiet: number;
  skip: number;
}

export interface NodeOutputOptions {
  logDir: string;
  maxBytes: number;
  checkMs?: number;
  logger: Logger;
}

type Page = { start: number; offset: number; size: number; data: Buffer };

export class NodeOutput {
  private readonly gens = new Map<number, Map<number, OutputFile>>();
  /** The directory made last: launches of one generation all go there, one mkdir for them all. */
  private madeDir: string | null = null;
  private readonly warned = new Set<string>();
  private readonly buf = Buffer.allocUnsafe(SYNC_COPY_BYTES);
  private timer: NodeJS.Timeout | null = null;
  private checking: Promise<void> | null = null;
  private tailReads = 0;
  private readonly tailQueue: (() => void)[] = [];

  constructor(private readonly opts: NodeOutputOptions) {}

  /**
   * Creates (or empties) the output file of a node about to start and opens it
   * for appending; the caller hands the descriptor to the node and closes its own copy.
   */
  open(generation: number, index: number): { fd: number; output: OutputFile } {
    const dir = this.dirOf(generation);
    const file = path.join(dir, `node-${index}.log`);
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_APPEND;
    let fd: number;
    try {
      if (dir !== this.madeDir) mkdirSync(dir, { recursive: true });
      fd = openSync(file, flags, 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      // The directory was deleted since it was made: once more.
      mkdirSync(dir, { recursive: true });
      fd = openSync(file, flags, 0o644);
    }
    this.madeDir = dir;
    const { dev, ino } = fstatSync(fd);
    return { fd, output: { generation, index, file, dev, ino, pid: 0, alive: false, base: 0, rotated: 0, rotations: 0, gone: false, lastSize: 0, quiet: 0, skip: 0 } };
  }

  /** The node of `output` started as `pid`: from now on its file is checked, rotated and readable. */
  started(output: OutputFile, pid: number): void {
    output.pid = pid;
    output.alive = true;
    let gen = this.gens.get(output.generation);
    if (!gen) {
      gen = new Map();
      this.gens.set(output.generation, gen);
      for (const g of this.gens.keys()) if (g <= output.generation - KEPT_GENERATIONS) this.forget(g);
    }
    gen.set(output.index, output);
  }

  /** The node's process was reaped. */
  exited(output: OutputFile): void {
    output.alive = false;
  }

  /**
   * The last lines of a node's output (UTF-8, invalid bytes replaced, each line
   * cut to a bounded length), or null if the file cannot be read. Never rejects.
   */
  async tail(output: OutputFile): Promise<string[] | null> {
    if (output.gone) return null;
    if (this.tailReads >= TAIL_READS) await new Promise<void>((resolve) => this.tailQueue.push(resolve));
    this.tailReads++;
    try {
      const page = await this.page(output, undefined, TAIL_BYTES);
      return lastLines(page.data, page.offset > page.start);
    } catch {
      return null;
    } finally {
      this.tailReads--;
      this.tailQueue.shift()?.();
    }
  }

  /** The `logs` command. `currentGeneration` is the default generation. */
  async read(params: LogsParams, currentGeneration: number): Promise<{ result: LogsResult } | { error: WireError }> {
    const generation = params.generation ?? currentGeneration;
    const unknown = (message: string) => ({ error: { code: 'UNKNOWN_NODE' as const, message } });
    const gen = this.gens.get(generation);
    if (!gen) {
      const kept = [...this.gens.keys()].sort((a, b) => a - b);
      return unknown(`generation ${generation} has no node output here: the manager serves the output of its last ${KEPT_GENERATIONS} generations that started nodes (${kept.length > 0 ? kept.join(', ') : 'none yet'})`);
    }
    const output = gen.get(params.index);
    if (!output) return unknown(`index ${params.index} names no node of generation ${generation} that started (it has ${gen.size}); run status to list them`);
    if (output.gone) return unknown(gone(output));
    let page: Page;
    try {
      page = await this.page(output, params.offset, params.maxBytes ?? LOGS_MAX_BYTES);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return unknown(gone(output));
      throw err;
    }
    const next = page.offset + page.data.length;
    const result: LogsResult = {
      generation,
      index: output.index,
      pid: output.pid,
      alive: output.alive,
      start: page.start,
      offset: page.offset,
      next,
      size: page.size,
      eof: next >= page.size,
      data: page.data,
    };
    return { result };
  }

  /** Checks file sizes every `checkMs` (an unref'd timer) and rotates what has grown past the limit. */
  start(): void {
    this.timer = setInterval(() => {
      this.checking ??= this.check().finally(() => (this.checking = null));
    }, this.opts.checkMs ?? NODE_LOG_DEFAULTS.checkMs);
    this.timer.unref();
  }

  /** Stops checking; waits for a rotation in progress. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.checking;
  }

  /** One round of checks. Never rejects: it runs on a timer, and a failure is logged once per kind. */
  private async check(): Promise<void> {
    try {
      await this.checkOnce();
    } catch (err) {
      this.warnOnce(`check:${(err as Error)?.message}`, `checking node output sizes failed: ${(err as Error)?.stack ?? String(err)}; herd retries at every check. Reported once.`);
    }
  }

  /** A stat per live node, in time slices; then the rotations, one at a time. */
  private async checkOnce(): Promise<void> {
    const live = [...this.gens.values()].flatMap((g) => [...g.values()]).filter((o) => o.alive);
    const over: OutputFile[] = [];
    const lost: OutputFile[] = [];
    let until = performance.now() + SLICE_MS;
    for (const output of live) {
      if (performance.now() > until) {
        await new Promise((resolve) => setImmediate(resolve));
        until = performance.now() + SLICE_MS;
      }
      if (!output.alive) continue;
      if (output.gone) {
        this.capDeleted(output);
        continue;
      }
      if (output.skip > 0) {
        output.skip--;
        continue;
      }
      const st = statOf(output.file);
      if (!sameFile(st, output)) {
        output.gone = true;
        lost.push(output);
        continue;
      }
      // Growing: checked every time. Quiet: skips 1, 2, ... up to QUIET_MAX_SKIP checks.
      output.quiet = st.size === output.lastSize ? output.quiet + 1 : 0;
      output.skip = Math.min(output.quiet, QUIET_MAX_SKIP);
      output.lastSize = st.size;
      if (this.opts.maxBytes > 0 && st.size > this.opts.maxBytes) over.push(output);
    }
    this.reportLost(lost);
    for (const output of over) {
      if (!output.alive || output.gone) continue;
      try {
        await this.rotate(output);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        this.warnOnce(
          `rotate:${e.code}`,
          `cannot rotate node output ${output.file} (${e.code ?? 'error'}: ${e.message}); it keeps growing past --node-log-max-bytes ${this.opts.maxBytes} and herd retries at every check. ` +
            `To fix: ${e.code === 'ENOSPC' || e.code === 'EDQUOT' ? 'free space on the file system holding the log dir' : 'let the manager write the log dir'}. Reported once per kind of error.`,
        );
      }
    }
  }

  /**
   * Copy-truncate: node-I.log -> node-I.log.1 (replaced), then node-I.log emptied.
   * The bulk is copied by the kernel (copyFile) while the node keeps writing; a fast
   * writer is chased with bounded reads until what is left fits one buffer; that
   * rest, the truncation and the bookkeeping are one synchronous step.
   */
  private async rotate(output: OutputFile): Promise<void> {
    const tmp = `${output.file}.1.tmp`;
    let src: FileHandle | undefined;
    let dst: FileHandle | undefined;
    let done = false;
    try {
      await copyFile(output.file, tmp);
      src = await open(output.file, 'r+');
      dst = await open(tmp, 'r+');
      let copied = (await dst.stat()).size;
      while ((await src.stat()).size - copied > this.buf.length) {
        const { bytesRead } = await src.read(this.buf, 0, this.buf.length, copied);
        if (bytesRead === 0) break;
        await dst.write(this.buf, 0, bytesRead, copied);
        copied += bytesRead;
      }
      // Synchronous from here: what the node appends between the last read and the truncation is the loss.
      if (!sameFile(fstatSync(src.fd), output)) return;
      let n = readSync(src.fd, this.buf, 0, this.buf.length, copied);
      for (let i = 0; n === this.buf.length && i < SYNC_READS; i++) {
        writeSync(dst.fd, this.buf, 0, n, copied);
        copied += n;
        n = readSync(src.fd, this.buf, 0, this.buf.length, copied);
      }
      ftruncateSync(src.fd, 0);
      writeSync(dst.fd, this.buf, 0, n, copied);
      renameSync(tmp, `${output.file}.1`);
      done = true;
      output.base += copied + n;
      output.rotated = copied + n;
      output.rotations++;
    } finally {
      await Promise.all([src?.close(), dst?.close()]);
      if (!done) await rm(tmp, { force: true });
    }
  }

  /**
   * A node still writes to a file that was deleted: the disk space stays in use
   * until the node exits, unseen. Truncated through /proc/<pid>/fd at the same
   * limit, if that descriptor still is the file the node was given.
   */
  private capDeleted(output: OutputFile): void {
    if (this.opts.maxBytes === 0) return;
    for (const fd of [1, 2]) {
      const link = `/proc/${output.pid}/fd/${fd}`;
      try {
        const st = statOf(link);
        if (!sameFile(st, output)) continue;
        if (st.size > this.opts.maxBytes) truncateSync(link, 0);
        return;
      } catch {
        return; // exited meanwhile, or not ours to touch
      }
    }
  }

  /** One warning per generation whose files went missing, however many nodes and checks see it. */
  private reportLost(lost: OutputFile[]): void {
    for (const generation of new Set(lost.map((o) => o.generation))) {
      // The rest of the generation, checked now: a directory deleted during a check is counted whole.
      let n = 0;
      for (const o of this.gens.get(generation)?.values() ?? []) {
        if (!o.alive) continue;
        if (!o.gone && !sameFile(statOf(o.file), o)) o.gone = true;
        if (o.gone) n++;
      }
      const dirGone = !statOf(this.opts.logDir)?.isDirectory();
      const what = dirGone
        ? `the log dir ${this.opts.logDir} was deleted while ${n} node(s) of generation ${generation} still write to files in it`
        : `${n} node output file(s) in ${this.dirOf(generation)} were deleted or replaced while their nodes still write to them`;
      this.warnOnce(
        `gone:${generation}`,
        `${what}. Their output goes on into the deleted files, which herd truncates at --node-log-max-bytes so that they cannot fill the disk; ` +
          `\`logs\` and the last lines in status are not available for these nodes. The next generate makes new files` +
          `${dirGone ? ' (send SIGHUP to the manager to create manager.log again)' : ''}. To free space, delete only the gen-* directories of past generations. Reported once per generation.`,
      );
    }
  }

  private warnOnce(key: string, message: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.opts.logger.warn(message);
  }

  private forget(generation: number): void {
    this.gens.delete(generation);
    this.warned.delete(`gone:${generation}`);
  }

  private dirOf(generation: number): string {
    return path.join(this.opts.logDir, 'nodes', `gen-${generation}`);
  }

  /**
   * Up to `maxBytes` of a node's output from `offset` (default: the last `maxBytes`),
   * across node-I.log.1 and node-I.log; one contiguous piece. An offset already
   * rotated away starts at the oldest byte kept, one past the end (someone else
   * truncated the file) at the start of the current file. A read that overlapped
   * a rotation is done again.
   */
  private async page(output: OutputFile, offset: number | undefined, maxBytes: number): Promise<Page> {
    for (let attempt = 1; ; attempt++) {
      const { base, rotated, rotations } = output;
      const size = base + (await stat(output.file)).size;
      const start = base - rotated;
      let at = offset === undefined ? Math.max(start, size - maxBytes) : offset < start ? start : offset > size ? base : offset;
      let first = at;
      const parts: Buffer[] = [];
      let want = Math.min(maxBytes, size - at);
      if (want > 0 && at < base) {
        const expected = Math.min(want, base - at);
        const piece = await readOr(`${output.file}.1`, at - start, expected);
        if (piece.length === 0) {
          // node-I.log.1 is gone or shorter than it was: go on with the current file.
          first = at = base;
          want = Math.min(maxBytes, size - base);
        } else {
          parts.push(piece);
          at += piece.length;
          want = piece.length < expected ? 0 : want - piece.length;
        }
      }
      if (want > 0) parts.push(await readOr(output.file, at - base, want));
      if (output.rotations !== rotations && attempt < 3) continue;
      return { start, offset: first, size, data: parts.length === 1 ? parts[0] : Buffer.concat(parts) };
    }
  }
}

/** A path's stat, or undefined if it cannot be had (no such file, a file in the way of a directory...). */
function statOf(file: string): Stats | undefined {
  try {
    return statSync(file, { throwIfNoEntry: false });
  } catch {
    return undefined;
  }
}

/** `st` is the file the node was given (a path can come to name another file). */
const sameFile = (st: Stats | undefined, output: OutputFile): st is Stats => st !== undefined && st.ino === output.ino && st.dev === output.dev;

/** `file`'s bytes at [position, position + length); none if the file or that range is gone. */
async function readOr(file: string, position: number, length: number): Promise<Buffer> {
  try {
    return (await readChunk(file, position, length)).data;
  } catch (err) {
    if (err instanceof FileChunkError && (err.code === 'ENOENT' || err.code === 'RANGE')) return Buffer.alloc(0);
    throw err;
  }
}

function gone(output: OutputFile): string {
  return `the output of node ${output.index} of generation ${output.generation} cannot be read: ${output.file} was deleted or replaced while the manager ran`;
}

/**
 * The last lines of `data` as a terminal would show them (after a carriage return,
 * only what follows it). `cut`: data starts mid-output, so its first line is partial
 * and dropped (unless it is all there is).
 */
export function lastLines(data: Buffer, cut: boolean): string[] {
  let text = data.toString('utf8');
  if (cut) {
    const nl = text.indexOf('\n');
    if (nl >= 0 && nl < text.length - 1) text = text.slice(nl + 1);
  }
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.slice(-TAIL_LINES).map((line) => {
    const trimmed = line.endsWith('\r') ? line.slice(0, -1) : line;
    const shown = [...trimmed.slice(trimmed.lastIndexOf('\r') + 1)];
    return shown.length > TAIL_LINE_CHARS ? `${shown.slice(0, TAIL_LINE_CHARS - 1).join('')}…` : shown.join('');
  });
}
