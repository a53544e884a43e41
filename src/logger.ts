// Logging: one JSON line per record to <log-dir>/manager.log (for machines), and a
// short human line on stderr (stdout carries only the `listening host:port` line).
//
// Log rotation (SIGHUP). winston's File transport has no reopen, so
// reopenLogFiles() replaces it with a new File transport on the same path: after
// `mv manager.log manager.log.1` the new one creates a fresh manager.log, and the
// old one is ended, which flushes what it still holds into the renamed file.
// If manager.log cannot be opened (its directory was deleted and cannot be made
// again, the disk is full...), the file transport is swapped for one that keeps
// the records in memory (the first MAX_HELD), one error says so on the console,
// and opening is retried every `retryMs` (re-creating the directory); once it
// works, the held records are written first, then logging goes on as usual.

import { appendFileSync, closeSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import winston from 'winston';

export type Logger = winston.Logger;

/** Records kept in memory while manager.log cannot be written; later ones are counted and dropped. */
const MAX_HELD = 10000;
/** How long a replaced file transport may take to flush into the old file. */
const RETIRE_TIMEOUT_MS = 2000;

const consoleLine = winston.format.printf(({ level, message, timestamp }) => {
  return `${String(timestamp).slice(11, 23)} ${level.padEnd(5)} ${String(message)}`;
});

const fileFormat = () => winston.format.combine(winston.format.timestamp(), winston.format.errors({ stack: true }), winston.format.json());

interface Held {
  lines: string[];
  dropped: number;
  since: number;
}

/** The manager.log side of a logger: which transport writes it now, and what is in flight. */
interface LogFile {
  dir: string;
  file: string;
  retryMs: number;
  /** The File transport, or the holding transport while the file cannot be opened. */
  current: winston.transport;
  held: Held | null;
  /** Replaced transports still flushing into the file they had open. */
  retiring: Set<Promise<void>>;
  retry: NodeJS.Timeout | null;
  closed: boolean;
}

const logFiles = new WeakMap<Logger, LogFile>();
const closing = new WeakMap<Logger, Promise<void>>();

export function createLogger(opts: { logDir?: string; level?: string; console?: boolean; retryMs?: number }): Logger {
  const transports: winston.transport[] = [];
  let lf: LogFile | null = null;
  if (opts.logDir) {
    const file = path.join(opts.logDir, 'manager.log');
    const current = new winston.transports.File({ filename: file, format: fileFormat() });
    lf = { dir: opts.logDir, file, retryMs: opts.retryMs ?? 1000, current, held: null, retiring: new Set(), retry: null, closed: false };
    transports.push(current);
  }
  if (opts.console !== false) {
    transports.push(
      new winston.transports.Console({
        stderrLevels: ['error', 'warn', 'info', 'debug'],
        format: winston.format.combine(winston.format.timestamp(), consoleLine),
      }),
    );
  }
  const logger = winston.createLogger({
    level: opts.level ?? 'info',
    exitOnError: false,
    transports,
    silent: transports.length === 0,
  });
  // Without a listener, an 'error' on the logger (a transport failing, a record
  // logged after closeLogger) would be thrown and take the daemon down.
  logger.on('error', reportLoggerError);
  if (lf) logFiles.set(logger, lf);
  return logger;
}

const reportedErrors = new Set<string>();
function reportLoggerError(err: NodeJS.ErrnoException): void {
  // A record logged after closeLogger(), while the process exits: nothing to do.
  if (err?.code === 'ERR_STREAM_WRITE_AFTER_END') return;
  const key = `${err?.code}: ${err?.message ?? String(err)}`;
  if (reportedErrors.has(key) || reportedErrors.size > 100) return;
  reportedErrors.add(key);
  process.stderr.write(`herd: logging failed (${key}); records may be missing from manager.log\n`);
}

export type ReopenResult = { ok: true; file: string } | { ok: false; file: string; error: string };

/**
 * Reopens manager.log (SIGHUP, after logrotate moved it): a new File transport on
 * the same path, creating the directory again if it was deleted. Returns null for
 * a logger without a file or one being closed. On failure the records are held in
 * memory, the error is logged once, and a retry timer keeps trying.
 */
export function reopenLogFiles(logger: Logger): ReopenResult | null {
  const lf = logFiles.get(logger);
  if (!lf || lf.closed) return null;
  return attempt(logger, lf);
}

function attempt(logger: Logger, lf: LogFile): ReopenResult {
  const held = lf.held;
  let fresh: winston.transport;
  try {
    mkdirSync(lf.dir, { recursive: true });
    if (held) writeHeld(lf, held);
    // winston opens the file later, asynchronously, and reports a failure only to
    // its debug channel (the records then pile up unseen). Open it once here, so a
    // failure is known now and the new file exists as soon as this returns.
    closeSync(openSync(lf.file, 'a'));
    fresh = new winston.transports.File({ filename: lf.file, format: fileFormat() });
  } catch (err) {
    hold(logger, lf, err as NodeJS.ErrnoException);
    return { ok: false, file: lf.file, error: describe(err) };
  }
  swap(logger, lf, fresh);
  if (lf.retry) clearInterval(lf.retry);
  lf.retry = null;
  if (held) {
    const dropped = held.dropped > 0 ? `, and ${held.dropped} more were dropped (over the limit of ${MAX_HELD})` : '';
    logger.info(
      `${lf.file} can be written again after ${Math.round((Date.now() - held.since) / 1000)} s; the ${held.lines.length} record(s) kept in memory meanwhile were written to it first${dropped}`,
    );
  }
  return { ok: true, file: lf.file };
}

/** Appends the held records (throws if it cannot; they are then kept). */
function writeHeld(lf: LogFile, held: Held): void {
  let text = held.lines.join('');
  if (held.dropped > 0) {
    text += `${JSON.stringify({ level: 'warn', message: `${held.dropped} log record(s) were dropped while ${lf.file} could not be written (they were printed on stderr)`, timestamp: new Date().toISOString() })}\n`;
  }
  if (text) appendFileSync(lf.file, text);
  lf.held = null;
}

function hold(logger: Logger, lf: LogFile, err: NodeJS.ErrnoException): void {
  if (!lf.held) {
    const held: Held = { lines: [], dropped: 0, since: Date.now() };
    const sink = new Writable({
      decodeStrings: false,
      write(chunk, _encoding, done) {
        if (held.lines.length < MAX_HELD) held.lines.push(String(chunk));
        else held.dropped += 1;
        done();
      },
    });
    lf.held = held;
    swap(logger, lf, new winston.transports.Stream({ stream: sink, format: fileFormat() }));
    logger.error(
      `cannot reopen ${lf.file}: ${describe(err)}. Log records are kept in memory (up to ${MAX_HELD}) and printed here, and are written ` +
        `to the file as soon as it can be opened; retrying every ${lf.retryMs / 1000} s. To fix: ${hint(err, lf.dir)}.`,
    );
  }
  if (!lf.retry) {
    lf.retry = setInterval(() => {
      if (!lf.closed) attempt(logger, lf);
    }, lf.retryMs);
    lf.retry.unref();
  }
}

function describe(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const message = String(e?.message ?? err);
  // Node's fs errors already start with their code.
  return e?.code && !message.startsWith(e.code) ? `${e.code}: ${message}` : message;
}

function hint(err: NodeJS.ErrnoException, dir: string): string {
  switch (err.code) {
    case 'ENOENT':
    case 'ENOTDIR':
    case 'EEXIST':
      return `make ${dir} a directory again (something else is in the way, or a parent is missing): mkdir -p ${dir}`;
    case 'ENOSPC':
    case 'EDQUOT':
      return `free space on the file system holding ${dir}`;
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return `let this user write ${dir} and its manager.log`;
    default:
      return `check that ${dir} is a writable directory`;
  }
}

/** Puts `fresh` in place of the current file transport; the old one flushes and closes on its own. */
function swap(logger: Logger, lf: LogFile, fresh: winston.transport): void {
  const old = lf.current;
  // winston calls close() on a transport that is removed; for File that ends its
  // inner stream at once, and a record still queued in the transport would then
  // be written after end (lost, and an error). end() below flushes in order.
  old.close = () => {};
  logger.add(fresh);
  logger.remove(old);
  lf.current = fresh;
  // An error from a transport that was let go must not reach the logger (winston
  // re-adds a transport that reports an error) or go unhandled.
  old.removeAllListeners('error');
  old.removeAllListeners('warn');
  old.on('error', () => {});
  const done = new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, RETIRE_TIMEOUT_MS);
    timer.unref();
    old.once('finish', () => {
      clearTimeout(timer);
      resolve();
    });
    old.end();
  });
  lf.retiring.add(done);
  void done.then(() => lf.retiring.delete(done));
}

/**
 * Flushes every transport and resolves when the file is written. winston loses
 * lines logged right before process.exit(); end() and wait for 'finish' instead.
 * Safe to call more than once (a second signal during shutdown): one close.
 */
export function closeLogger(logger: Logger, timeoutMs = 2000): Promise<void> {
  let done = closing.get(logger);
  if (!done) {
    done = close(logger, timeoutMs);
    closing.set(logger, done);
  }
  return done;
}

async function close(logger: Logger, timeoutMs: number): Promise<void> {
  const lf = logFiles.get(logger);
  if (lf) {
    lf.closed = true;
    if (lf.retry) clearInterval(lf.retry);
    lf.retry = null;
  }
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    timer.unref();
    logger.on('finish', () => {
      clearTimeout(timer);
      // The File transport finishes its stream a tick after the logger.
      setImmediate(resolve);
    });
    logger.end();
  });
  if (!lf) return;
  if (lf.held) {
    // A last try, so that what was held is not lost if the directory is back.
    const n = lf.held.lines.length + lf.held.dropped;
    try {
      mkdirSync(lf.dir, { recursive: true });
      writeHeld(lf, lf.held);
    } catch (err) {
      process.stderr.write(`herd: ${n} log record(s) could not be written to ${lf.file} (${describe(err)}); they were printed on stderr\n`);
    }
  }
  await Promise.all([...lf.retiring]);
}
