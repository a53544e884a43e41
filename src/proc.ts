// Reading /proc: the OS's own answer to "is this process alive, and whose group is it in".

import { closeSync, openSync, readSync } from 'node:fs';

export interface ProcStat {
  pid: number;
  /** One-letter state: R, S, D, Z (zombie), T (stopped), ... */
  state: string;
  ppid: number;
  pgid: number;
  /** utime + stime, in clock ticks. */
  cpuTicks: number;
  /** Start time after boot, in clock ticks: with the pid, identifies a process across pid reuse. */
  startTicks: number;
  /** Resident set size, in pages. */
  rssPages: number;
}

/** Parses the text of /proc/<pid>/stat. The command name may contain spaces and parentheses. */
export function parseStat(pid: number, text: string): ProcStat {
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 of proc(5) (state); field N is fields[N - 3].
  return {
    pid,
    state: fields[0],
    ppid: Number(fields[1]),
    pgid: Number(fields[2]),
    cpuTicks: Number(fields[11]) + Number(fields[12]),
    startTicks: Number(fields[19]),
    rssPages: Number(fields[21]),
  };
}

// /proc/<pid>/stat is about 300 bytes (52 numeric fields and a comm of at most 16).
const statBuf = Buffer.allocUnsafe(2048);

/** The process's stat, or null if there is no such process. */
export function readStat(pid: number): ProcStat | null {
  // One read into a reused buffer: readFileSync also stats the file and sizes a
  // buffer for it, about half the cost of a call made once per node started or connected.
  let fd: number;
  try {
    fd = openSync(`/proc/${pid}/stat`, 'r');
  } catch {
    return null;
  }
  try {
    const n = readSync(fd, statBuf, 0, statBuf.length, 0);
    return parseStat(pid, statBuf.toString('latin1', 0, n));
  } catch {
    return null; // ESRCH: reaped between the open and the read
  } finally {
    closeSync(fd);
  }
}

/** Alive means present and not a zombie (a zombie still answers kill(pid, 0)). */
export function isAlive(pid: number): boolean {
  const stat = readStat(pid);
  return stat !== null && stat.state !== 'Z' && stat.state !== 'X';
}

/** Process group of a pid, or null if there is no such process. */
export function pgidOf(pid: number): number | null {
  return readStat(pid)?.pgid ?? null;
}
