// cgroup v2 containment, used when the host offers a writable cgroup v2 tree.
//
// Each node gets its own cgroup, <manager's cgroup>/herd-<run id>/g<G>-n<I>, so
// `cgroup.kill` reaches every descendant of the node, whatever it did to its
// process group, session or environment. A process that forks before it is moved
// in (the microseconds between spawn and the write to cgroup.procs) is still
// covered by the process-group and run-id layers.

import { existsSync, readdirSync, readFileSync, rmdirSync, mkdirSync, writeFileSync } from 'node:fs';
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

  private nodeDir(generation: number, index: number): string {
    return path.join(this.dir, `g${generation}-n${index}`);
  }

  /** Moves a freshly started node into its own cgroup; false if the OS refused. */
  add(pid: number, generation: number, index: number): boolean {
    const dir = this.nodeDir(generation, index);
    try {
      mkdirSync(dir, { recursive: true });
      writeFileSync(path.join(dir, 'cgroup.procs'), String(pid));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Kills everything left in a node's cgroup. Returns how many of those
   * processes had left the node's process group `pgid` (the ones only this layer catches).
   */
  kill(generation: number, index: number, pgid: number): number {
    const dir = this.nodeDir(generation, index);
    const pids = readPids(dir);
    if (pids.length === 0) return 0;
    // A pid gone by the time its stat is read was a group member dying of the group's SIGKILL: not an escapee.
    const escaped = pids.filter((pid) => {
      const st = readStat(pid);
      return st !== null && st.pgid !== pgid;
    }).length;
    writeKill(dir);
    return escaped;
  }

  /** Removes a node's cgroup once it is empty; false while processes are still leaving it. */
  remove(generation: number, index: number): boolean {
    return removeDir(this.nodeDir(generation, index));
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
