// The run's state file: what a manager started, so that its leftovers can be
// reaped if it dies without cleaning up (SIGKILL, OOM killer, power to the
// process but not the host).
//
// One file per running manager, <state dir>/run-<run id>.jsonl: a header line
// (run id, the manager's pid and start time, boot id, cgroup), then one line per
// node started ("+") and reaped ("-"). It is rewritten to the header when a
// reset leaves nothing alive, and deleted on a clean exit. Its reader is the
// watchdog (the moment the manager dies) and the next manager (at its start).
// A pid is only signalled when its start time still matches the one recorded,
// so a pid reused by an unrelated process is never touched.

import { closeSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import { Cgroups } from './cgroup';
import { readStat } from './proc';
import { sweepRun } from './sweep';

export interface RunHeader {
  v: 1;
  runId: string;
  /** The manager process: pid and start time (clock ticks after boot). */
  pid: number;
  startTicks: number;
  bootId: string;
  /** The run's cgroup directory, when the cgroup layer is in use. */
  cgroup: string | null;
}

/** What reaping leftovers found, per containment layer. */
export interface ReapReport {
  /** Dead managers whose leftovers were looked for. */
  runs: number;
  /** Node process groups still alive, SIGKILLed through the group. */
  groups: number;
  /** Processes found in the runs' cgroups. */
  cgroup: number;
  /** Processes found by their run id in /proc/<pid>/environ. */
  sweep: number;
}

export function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

/**
 * Creates the state dir if needed and checks that only this user can write it:
 * whoever can plant a state file there can make the manager kill processes.
 */
export function ensureStateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  const uid = process.getuid?.();
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
  if (uid !== undefined && st.uid !== uid) throw new Error(`${dir} belongs to uid ${st.uid}, not to this user (uid ${uid})`);
  if ((st.mode & 0o022) !== 0) throw new Error(`${dir} is writable by group or others (mode ${(st.mode & 0o777).toString(8)}); chmod 700 it`);
}

export class RunJournal {
  private fd: number;
  /**
   * Removals not yet written: a reset reaps nodes by the hundred per event-loop
   * turn, and they are written once per turn. One lost in a crash is harmless: the
   * reaper skips a pid whose start time no longer matches, and a group whose leader
   * is gone can only hold that node's own processes.
   */
  private removed = '';

  private constructor(readonly file: string, private readonly header: RunHeader) {
    this.fd = openSync(file, 'w', 0o600);
    this.writeHeader();
  }

  static create(stateDir: string, header: RunHeader): RunJournal {
    ensureStateDir(stateDir);
    return new RunJournal(path.join(stateDir, `run-${header.runId}.jsonl`), header);
  }

  add(pid: number, startTicks: number): void {
    // Pending removals first: the pid may be one of theirs, reused.
    writeSync(this.fd, `${this.takeRemoved()}{"+":${pid},"s":${startTicks}}\n`);
  }

  remove(pid: number): void {
    if (this.removed === '') setImmediate(() => this.flush());
    this.removed += `{"-":${pid}}\n`;
  }

  /** Starts the file over (nothing of the run is alive any more). */
  clear(): void {
    this.removed = '';
    closeSync(this.fd);
    this.fd = openSync(this.file, 'w', 0o600);
    this.writeHeader();
  }

  /** A clean exit: nothing is left to reap. */
  close(): void {
    this.removed = '';
    closeSync(this.fd);
    try {
      unlinkSync(this.file);
    } catch {
      // already gone
    }
  }

  private flush(): void {
    const removed = this.takeRemoved();
    if (removed !== '') writeSync(this.fd, removed);
  }

  private takeRemoved(): string {
    const removed = this.removed;
    this.removed = '';
    return removed;
  }

  private writeHeader(): void {
    writeSync(this.fd, `${JSON.stringify(this.header)}\n`);
  }
}

interface Journal {
  header: RunHeader;
  /** Nodes started and not recorded as reaped: pid -> start ticks. */
  live: Map<number, number>;
}

function readJournal(file: string): Journal | null {
  let lines: string[];
  try {
    lines = readFileSync(file, 'utf8').split('\n').filter(Boolean);
  } catch {
    return null;
  }
  let header: RunHeader;
  try {
    header = JSON.parse(lines[0]);
  } catch {
    return null;
  }
  if (header?.v !== 1 || typeof header.runId !== 'string') return null;
  const live = new Map<number, number>();
  for (const line of lines.slice(1)) {
    try {
      const entry = JSON.parse(line);
      if (typeof entry['+'] === 'number') live.set(entry['+'], entry.s);
      else if (typeof entry['-'] === 'number') live.delete(entry['-']);
    } catch {
      break; // a line torn by the crash: everything before it counts
    }
  }
  return { header, live };
}

function kill(target: number): boolean {
  try {
    process.kill(target, 'SIGKILL');
    return true;
  } catch {
    return false;
  }
}

/** Whether the manager that wrote this header is still running. */
function managerAlive(header: RunHeader): boolean {
  if (header.bootId !== bootId()) return false;
  const stat = readStat(header.pid);
  return stat !== null && stat.startTicks === header.startTicks && stat.state !== 'Z';
}

/** Kills whatever the run of `file` left behind, in every layer, then deletes the file. `journal`: its contents, if already read. */
export function reapRun(file: string, journal: Journal | null = readJournal(file)): ReapReport {
  const report: ReapReport = { runs: 0, groups: 0, cgroup: 0, sweep: 0 };
  if (journal && journal.header.bootId === bootId()) {
    report.runs = 1;
    for (const [pid, startTicks] of journal.live) {
      const stat = readStat(pid);
      if (stat !== null && stat.startTicks !== startTicks) continue; // the pid was reused
      // The leader may be gone while its group lives on; a group id is not reused while it has members.
      if (kill(-pid) || (stat !== null && kill(pid))) report.groups++;
    }
    const cgroups = journal.header.cgroup !== null ? Cgroups.existing(journal.header.cgroup) : null;
    if (cgroups) report.cgroup = cgroups.destroy();
    report.sweep = sweepRun(journal.header.runId);
  }
  try {
    unlinkSync(file);
  } catch {
    // another manager got there first
  }
  return report;
}

/** Reaps the leftovers of every dead manager that used `stateDir`; live managers' files are left alone. */
export function reapPredecessors(stateDir: string): ReapReport {
  const total: ReapReport = { runs: 0, groups: 0, cgroup: 0, sweep: 0 };
  let names: string[];
  try {
    names = readdirSync(stateDir);
  } catch {
    return total;
  }
  for (const name of names) {
    if (!/^run-[0-9a-f]+\.jsonl$/.test(name)) continue;
    const file = path.join(stateDir, name);
    const journal = readJournal(file);
    if (journal && managerAlive(journal.header)) continue;
    const r = reapRun(file, journal);
    total.runs += r.runs;
    total.groups += r.groups;
    total.cgroup += r.cgroup;
    total.sweep += r.sweep;
  }
  return total;
}
