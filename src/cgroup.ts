// cgroup v2 containment, used when the host offers a writable cgroup v2 tree.
//
// Each node gets its own cgroup, <manager's cgroup>/herd-<run id>/n<I>-<K>, so
// `cgroup.kill` reaches every descendant of the node, whatever it did to its
// process group, session or environment. A process that forks before it is moved
// in (the microseconds between spawn and the write to cgroup.procs) is still
// covered by the process-group and run-id layers.
//
// The cgroup of node index I is kept for the next node of index I: creating and
// removing a cgroup per node (mkdir, rmdir, and the kernel's teardown behind it)
// took about a third of a reset of 1000 nodes. One that still held processes
// when its node was reaped is killed and set aside until nothing of the run is
// alive; then it serves its index again if it has emptied, so a cgroup never
// holds two nodes' processes.

import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { readStat } from './proc';

/** Where this process's own cgroup v2 directory is, or null without a cgroup v2 mount. */
function ownCgroupDir(): string | null {
  let mount: string | null = null;
  let mountRoot = '/';
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [left, right] = line.split(' - ');
    if (right?.startsWith('cgroup2 ')) {
      const fields = left.split(' ');
      mountRoot = fields[3];
      mount = fields[4];
      break;
    }
  }
  if (mount === null) return null;
  const own = readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.startsWith('0::'));
  if (!own) return null;
  const rel = path.relative(mountRoot, own.slice(3));
  if (rel.startsWith('..')) return null;
  return path.join(mount, rel);
}

export class Cgroups {
  /** The cgroup the next node of each index is moved into. */
  private readonly slots = new Map<number, string>();
  /** Cgroups killed while they held processes, set aside until those have left. */
  private killed: { index: number; dir: string }[] = [];
  private created = 0;

  private constructor(readonly dir: string) {}

  /**
   * The run's cgroup directory, created under the manager's own cgroup, or null
   * (with the reason) when the host has no writable cgroup v2 with cgroup.kill.
   */
  static open(runId: string): { cgroups: Cgroups } | { reason: string } {
    let base: string | null;
    try {
      base = ownCgroupDir();
    } catch (err) {
      return { reason: `cannot read /proc/self/mountinfo: ${(err as Error).message}` };
    }
    if (base === null) return { reason: 'no cgroup v2 mount' };
    const dir = path.join(base, `herd-${runId}`);
    try {
      mkdirSync(dir);
    } catch (err) {
      return { reason: `cannot create ${dir}: ${(err as NodeJS.ErrnoException).code}` };
    }
    if (!existsSync(path.join(dir, 'cgroup.kill'))) {
      rmdirSync(dir);
      return { reason: 'the kernel has no cgroup.kill (Linux < 5.14)' };
    }
    return { cgroups: new Cgroups(dir) };
  }

  /** Reopens the directory of an earlier run (for reaping a dead manager's leftovers). */
  static existing(dir: string): Cgroups | null {
    return existsSync(path.join(dir, 'cgroup.kill')) ? new Cgroups(dir) : null;
  }

  /** Moves a freshly started node into the cgroup of its index; false if the OS refused. */
  add(pid: number, index: number): boolean {
    const dir = this.slots.get(index);
    if (dir !== undefined) {
      const entered = enter(dir, pid);
      // ENOENT: removed behind our back (an empty cgroup looks unused): make another.
      if (entered !== 'ENOENT') return entered === null;
    }
    const fresh = path.join(this.dir, `n${index}-${this.created++}`);
    try {
      mkdirSync(fresh);
    } catch {
      return false;
    }
    this.slots.set(index, fresh);
    return enter(fresh, pid) === null;
  }

  /**
   * A node of `index` was reaped and its process group `pgid` sent SIGKILL: kills
   * whatever is left in its cgroup. Returns how many of those processes had left
   * the group (the ones only this layer catches).
   */
  release(index: number, pgid: number): number {
    const dir = this.slots.get(index);
    if (dir === undefined) return 0;
    // Usually the node was alone in its cgroup, and it is empty now: nothing escaped.
    if (isEmpty(dir)) return 0;
    const pids = readPids(dir);
    // A pid gone by the time its stat is read was a group member dying of the group's SIGKILL: not an escapee.
    const escaped = pids.filter((pid) => {
      const st = readStat(pid);
      return st !== null && st.pgid !== pgid;
    }).length;
    writeKill(dir);
    this.slots.delete(index);
    this.killed.push({ index, dir });
    return escaped;
  }

  /**
   * Nothing of the run is alive: a killed cgroup that has emptied serves its index
   * again (or is removed, if that index has a new one); a busy one waits for the next time.
   */
  settle(): void {
    this.killed = this.killed.filter(({ index, dir }) => {
      if (!isEmpty(dir)) return true;
      if (this.slots.has(index)) removeDir(dir);
      else this.slots.set(index, dir);
      return false;
    });
  }

  /**
   * CPU time, in µs, used so far by every process ever in the run's cgroups
   * (`usage_usec` of its cpu.stat, kept by the kernel for every cgroup v2, with or
   * without the cpu controller), or null if it cannot be read.
   */
  cpuUsec(): number | null {
    try {
      const m = /^usage_usec (\d+)/m.exec(readFileSync(path.join(this.dir, 'cpu.stat'), 'latin1'));
      return m ? Number(m[1]) : null;
    } catch {
      return null;
    }
  }

  /** Kills everything in the run's cgroups and removes them; returns how many processes were there. */
  destroy(): number {
    let found = 0;
    for (const child of listChildren(this.dir)) found += readPids(child).length;
    found += readPids(this.dir).length;
    writeKill(this.dir);
    // Killed processes leave the cgroup within milliseconds; until then rmdir says EBUSY.
    for (let tries = 0; tries < 100; tries++) {
      for (const child of listChildren(this.dir)) removeDir(child);
      if (removeDir(this.dir)) break;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
    }
    return found;
  }
}

/** Moves `pid` into the cgroup `dir`: null, or the errno code of the failure. */
function enter(dir: string, pid: number): string | null {
  try {
    writeFileSync(path.join(dir, 'cgroup.procs'), String(pid));
    return null;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? 'EIO';
  }
}

const oneByte = Buffer.alloc(1);

/** No process in the cgroup: its cgroup.procs reads empty (a third of the time readFileSync takes). */
function isEmpty(dir: string): boolean {
  let fd: number;
  try {
    fd = openSync(path.join(dir, 'cgroup.procs'), 'r');
  } catch {
    return true; // removed
  }
  try {
    return readSync(fd, oneByte, 0, 1, null) === 0;
  } catch {
    return false; // cannot tell: the caller takes the careful path
  } finally {
    closeSync(fd);
  }
}

function readPids(dir: string): number[] {
  try {
    return readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function writeKill(dir: string): void {
  try {
    writeFileSync(path.join(dir, 'cgroup.kill'), '1');
  } catch {
    // ENOENT: already removed.
  }
}

function listChildren(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => path.join(dir, e.name));
  } catch {
    return [];
  }
}

function removeDir(dir: string): boolean {
  try {
    rmdirSync(dir);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT';
  }
}
