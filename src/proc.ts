// Reading /proc: the OS's own answer to "is this process alive, and whose group is it in".

import { readFileSync } from 'node:fs';

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

/** The process's stat, or null if there is no such process. */
export function readStat(pid: number): ProcStat | null {
  try {
    return parseStat(pid, readFileSync(`/proc/${pid}/stat`, 'latin1'));
  } catch {
    return null;
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
