// Appending to a data log (stats.jsonl, the timeline files) that may be moved, deleted
// or unwritable at any moment. Every append opens, writes and closes: a moved file is
// left alone (logrotate needs no HUP), and a deleted directory fails the write instead
// of swallowing lines through a descriptor to an unlinked file. A failure is warned
// about once, with what to do; when writing works again, that is logged once too.

import { appendFile, mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from './logger';

export class AppendLog {
  private broken = false;

  /**
   * `what` names the log in messages ("stats log"); `loss` says what a failure
   * costs ("CPU samples are not being recorded to it").
   */
  constructor(
    private readonly logger: Logger,
    private readonly what: string,
    private readonly loss: string,
  ) {}

  /** Appends `text` to `file`; resolves false (after the one warning) if it could not. */
  append(file: string, text: string): Promise<boolean> {
    return new Promise((resolve) => {
      appendFile(file, text, (err) => {
        if (err) {
          this.failed(file, err);
          return resolve(false);
        }
        if (this.broken) {
          this.broken = false;
          this.logger.info(`${this.what} ${file} is writable again; appending to it again`);
        }
        resolve(true);
      });
    });
  }

  /** Creates `dir` (and its parents); a failure counts as a failed write of `file`. */
  makeDir(dir: string, file: string): void {
    try {
      mkdirSync(dir, { recursive: true });
    } catch (err) {
      this.failed(file, err as NodeJS.ErrnoException);
    }
  }

  private failed(file: string, err: NodeJS.ErrnoException): void {
    if (this.broken) return;
    this.broken = true;
    const dir = path.dirname(file);
    const hint =
      err.code === 'ENOENT'
        ? `the directory ${dir} no longer exists; recreate it (mkdir -p ${dir}, or send the manager SIGHUP) and writing resumes by itself`
        : err.code === 'ENOSPC' || err.code === 'EDQUOT'
          ? `the disk is full; free space on the file system holding ${dir} and writing resumes by itself`
          : `check that ${file} can be written (permissions, free space); writing resumes by itself once it can`;
    this.logger.warn(`cannot write the ${this.what} ${file} (${err.code ?? 'error'}: ${err.message}); ${this.loss}. To fix: ${hint}. This is reported once.`);
  }
}
