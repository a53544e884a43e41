// Logging: one JSON line per record to <log-dir>/manager.log (for machines), and a
// short human line on stderr (stdout carries only the `listening host:port` line).

import path from 'node:path';
import winston from 'winston';

export type Logger = winston.Logger;

const consoleLine = winston.format.printf(({ level, message, timestamp }) => {
  return `${String(timestamp).slice(11, 23)} ${level.padEnd(5)} ${String(message)}`;
});

export function createLogger(opts: { logDir?: string; level?: string; console?: boolean }): Logger {
  const transports: winston.transport[] = [];
  if (opts.logDir) {
    transports.push(
      new winston.transports.File({
        filename: path.join(opts.logDir, 'manager.log'),
        format: winston.format.combine(winston.format.timestamp(), winston.format.errors({ stack: true }), winston.format.json()),
      }),
    );
  }
  if (opts.console !== false) {
    transports.push(
      new winston.transports.Console({
        stderrLevels: ['error', 'warn', 'info', 'debug'],
        format: winston.format.combine(winston.format.timestamp(), consoleLine),
      }),
    );
  }
  return winston.createLogger({
    level: opts.level ?? 'info',
    exitOnError: false,
    transports,
    silent: transports.length === 0,
  });
}

/**
 * Flushes every transport and resolves when the file is written. winston loses
 * lines logged right before process.exit(); end() and wait for 'finish' instead.
 */
export function closeLogger(logger: Logger, timeoutMs = 2000): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    timer.unref();
    logger.on('finish', () => {
      clearTimeout(timer);
      // The File transport finishes its stream a tick after the logger.
      setImmediate(resolve);
    });
    logger.end();
  });
}
