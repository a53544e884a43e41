// Containment: the layers that make sure no node, nor anything it started,
// outlives its generation or its manager.
//
//   1. process group  every node is a group leader; the group gets SIGKILL when the
//                     node is reaped (src/launcher.ts)
//   2. cgroup v2      each node in its own cgroup, emptied with cgroup.kill, when the
//                     host offers a writable cgroup v2 tree (src/cgroup.ts)
//   3. run id         every node's environment carries HERD_RUN_ID; a /proc sweep
//                     after each reset and kill finds what escaped 1 and 2 (src/sweep.ts)
//   4. state file     what was started, for the watchdog (the moment this manager
//                     dies, even by SIGKILL) and the next manager (src/runstate.ts)

import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { Cgroups } from './cgroup';
import type { Logger } from './logger';
import { readStat } from './proc';
import { bootId, ensureStateDir, reapPredecessors, RunJournal } from './runstate';
import { RUN_ID_VAR, runOf, RunProcess, sweepRun } from './sweep';

export interface ContainmentOptions {
  stateDir: string;
  logger: Logger;
  /** Use the cgroup layer when the host allows it (HERD_CGROUP=off turns it off). */
  cgroup: boolean;
  /** The compiled watchdog script, or null to run without one (unit tests). */
  watchdog: string | null;
  /** Where the watchdog writes what it did. */
  watchdogLog?: string;
}

export class Containment {
  readonly runId = randomBytes(8).toString('hex');
  readonly cgroups: Cgroups | null;
  private readonly journal: RunJournal;
  private watchdog: ChildProcess | null = null;
  /** Live nodes the OS would not move into their cgroup. */
  private readonly uncontained = new Set<number>();
  private closed = false;

  constructor(private readonly opts: ContainmentOptions) {
    const { logger } = opts;
    ensureStateDir(opts.stateDir);
    const leftovers = reapPredecessors(opts.stateDir);
    if (leftovers.runs > 0) {
      logger.warn(
        `found ${leftovers.runs} run(s) of a manager that died without cleaning up; killed ${leftovers.groups} node group(s), ` +
          `${leftovers.cgroup} process(es) in their cgroups and ${leftovers.sweep} found by run id`,
      );
    }
    let cgroups: Cgroups | null = null;
    if (opts.cgroup) {
      const opened = Cgroups.open(this.runId);
      if ('cgroups' in opened) cgroups = opened.cgroups;
      else logger.info(`cgroup layer off: ${opened.reason}; process groups and the run-id sweep still contain nodes`);
    }
    this.cgroups = cgroups;
    const self = readStat(process.pid)!;
    this.journal = RunJournal.create(opts.stateDir, {
      v: 1,
      runId: this.runId,
      pid: process.pid,
      startTicks: self.startTicks,
      bootId: bootId(),
      cgroup: cgroups?.dir ?? null,
    });
    if (opts.watchdog !== null) this.startWatchdog(opts.watchdog);
  }

  /** Environment variables every node gets. */
  env(): Record<string, string> {
    return { [RUN_ID_VAR]: this.runId };
  }

  /** Which layers are active, for the startup log line. */
  describe(): string {
    return `process groups, ${this.cgroups ? `cgroup ${this.cgroups.dir}` : 'no cgroup'}, run id ${this.runId}, state file ${this.journal.file}${this.watchdog ? `, watchdog pid ${this.watchdog.pid}` : ''}`;
  }

  /** A node's process has started: record it, and move it into its cgroup. */
  started(pid: number, index: number): void {
    const stat = readStat(pid);
    // A child that already died has no stat; its exit event follows.
    if (stat) this.journal.add(pid, stat.startTicks);
    if (this.cgroups && !this.cgroups.add(pid, index)) {
      this.uncontained.add(pid);
      this.opts.logger.debug(`node ${index} (pid ${pid}) could not be moved into its cgroup; the other layers still cover it`);
    }
  }

  /**
   * A node's process was reaped and its group sent SIGKILL. Empties its cgroup;
   * returns how many of its descendants had left the group (caught by the cgroup).
   */
  reaped(pid: number, index: number): number {
    this.journal.remove(pid);
    this.uncontained.delete(pid);
    return this.cgroups ? this.cgroups.release(index, pid) : 0;
  }

  /**
   * CPU time (µs) used so far by the run's nodes and everything they started, or
   * null when that cannot be told: no cgroup layer, or a live node outside its
   * cgroup. The stats sampler reads no node while this does not move.
   */
  nodesCpuUsec(): number | null {
    return this.cgroups !== null && this.uncontained.size === 0 ? this.cgroups.cpuUsec() : null;
  }

  /** Nothing of this run is alive: the state file starts over, and the cgroups killed meanwhile are settled. */
  idle(): void {
    this.journal.clear();
    this.cgroups?.settle();
  }

  /** Kills the run's processes that outlived their node: all of them, or those of one node. */
  sweep(node: { generation: number; index: number } | null): number {
    return sweepRun(this.runId, node === null ? undefined : (p) => p.generation === node.generation && p.index === node.index);
  }

  /**
   * A `connect` from a process that is not a node of the current generation. If
   * it carries this run's id from an older generation it is a leftover (a late
   * node, or a descendant that escaped): it is killed. Returns it if so.
   */
  killLeftover(pid: number, currentGeneration: number): RunProcess | null {
    const p = runOf(pid, this.runId);
    if (p === null || p.generation === currentGeneration) return null;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
    return p;
  }

  /** A clean exit: every node is reaped. Removes cgroups and the state file, releases the watchdog. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.cgroups?.destroy();
    this.journal.close();
    this.watchdog?.stdin?.destroy();
  }

  private startWatchdog(script: string): void {
    const log = openSync(this.opts.watchdogLog ?? '/dev/null', 'a');
    try {
      // Its own session: terminal signals meant for the manager do not reach it.
      // Its stdin is a pipe whose only writer is this process: EOF means the manager is gone.
      const child = spawn(process.execPath, [script, this.journal.file], { detached: true, stdio: ['pipe', 'ignore', log] });
      child.unref();
      (child.stdin as unknown as { unref(): void }).unref();
      child.on('error', (err) => this.opts.logger.error(`could not start the watchdog (${err.message}); nodes would outlive a crash of this manager`));
      const since = Date.now();
      child.on('exit', (code, signal) => {
        if (this.closed) return;
        if (Date.now() - since < 1000) {
          this.opts.logger.error(`the watchdog exited at once (${signal ?? code}; see ${this.opts.watchdogLog}); nodes would outlive a crash of this manager`);
          return;
        }
        this.opts.logger.warn(`the watchdog (pid ${child.pid}) exited (${signal ?? code}); starting a new one`);
        this.startWatchdog(script);
      });
      this.watchdog = child;
    } finally {
      closeSync(log);
    }
  }
}
