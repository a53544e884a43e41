// Which manager last started on a log directory: `<log-dir>/manager.json`, its pid and
// start time. Two managers on one directory write over each other's node output
// (nodes/gen-G/) and timelines; the second is warned. A file left by a manager that
// has exited is harmless: its pid is dead, or belongs to a process started later.

import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { readStat } from './proc';

interface Writer {
  pid: number;
  startTicks: number;
}

/** Records this process as the log directory's manager; returns the pid of another one still running there, or null. */
export function claimLogDir(dir: string): number | null {
  const file = path.join(dir, 'manager.json');
  let other: number | null = null;
  try {
    const last = JSON.parse(readFileSync(file, 'utf8')) as Writer;
    const stat = readStat(last.pid);
    if (last.pid !== process.pid && stat !== null && stat.startTicks === last.startTicks && stat.state !== 'Z') other = last.pid;
  } catch {
    // none yet, or unreadable: nobody to warn about
  }
  const self: Writer = { pid: process.pid, startTicks: readStat(process.pid)!.startTicks };
  writeFileSync(file, `${JSON.stringify(self)}\n`);
  return other;
}
