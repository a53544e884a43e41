// The process launcher: starts node processes and kills their process groups.
//
// Each node runs directly (no shell), in its own session and process group, with
// stdout and stderr appended to its own file (src/nodeoutput.ts), so a chatty node
// never blocks on a pipe the manager does not read; src/spawner.ts starts and reaps
// it. Spawning is synchronous (0.1-4 ms of event-loop time per child, by spawner
// and load), so launches are queued and started in slices of at
// most `sliceMs` with a yield in between: status requests and node connects are
// served meanwhile (a fixed batch of 25 held the loop for up to 100 ms).
//
// `processLogic` is the XState actor that machines/node.ts invokes as `process`.

import { closeSync } from 'node:fs';
import { fromCallback } from 'xstate';
import type { NodeInput, ProcessEvent, ProcessStop } from '../machines/node';
import type { Containment } from './containment';
import type { Logger } from './logger';
import type { NodeOutput, OutputFile } from './nodeoutput';
import type { Spawner } from './spawner';

export interface LauncherOptions {
  command: string;
  args: string[];
  /** Environment every node inherits (the manager's own, plus HERD_MANAGER / HERD_TOKEN). */
  env: NodeJS.ProcessEnv;
  /** Opens each node's output file, and reads the last lines of a node that exited on its own. */
  output: NodeOutput;
  killGraceMs: number;
  logger: Logger;
  /** Records, moves into cgroups and sweeps up after the nodes (see src/containment.ts). */
  containment: Containment;
  /**
   * Nodes that may be alive at once before a launch is refused with EMFILE: each
   * holds manager descriptors (src/limits.ts, FDS_PER_NODE), and a manager out of
   * descriptors could no longer answer its controller.
   */
  maxLive: number;
  /** Where the bound comes from, for the error message. */
  maxLiveReason?: string;
  /** Event-loop time one slice of launches may take before yielding. */
  sliceMs?: number;
  spawner: Spawner;
}

interface Launch {
  input: NodeInput;
  report: (event: ProcessEvent) => void;
  pid: number | null;
  output: OutputFile | null;
  exited: boolean;
  cancelled: boolean;
  /** The grace period ran out and the group got SIGKILL. */
  escalated: boolean;
  graceTimer: NodeJS.Timeout | null;
}

export class Launcher {
  private readonly queue: Launch[] = [];
  /** Started and not yet reaped, by pid: the only pids this manager ever signals. */
  private readonly live = new Map<number, Launch>();
  private draining = false;
  private readonly sliceMs: number;

  constructor(private readonly opts: LauncherOptions) {
    this.sliceMs = opts.sliceMs ?? 5;
  }

  /** The actor logic for machines/node.ts `process`. */
  readonly processLogic = fromCallback<ProcessStop, NodeInput>(({ input, sendBack, receive }) => {
    const launch: Launch = { input, report: sendBack, pid: null, output: null, exited: false, cancelled: false, escalated: false, graceTimer: null };
    this.enqueue(launch);
    receive(() => this.stop(launch));
    // The actor is stopped when its node is dropped, or when the manager shuts down.
    return () => this.dispose(launch);
  });

  /** Pids of the nodes started and not yet reaped. */
  livePids(): number[] {
    return [...this.live.keys()];
  }

  /** SIGKILL every live group and every stray of the run at once (crash recovery, forced shutdown). Synchronous. */
  killAll(): number {
    for (const launch of this.live.values()) this.signalGroup(launch.pid!, 'SIGKILL');
    for (const launch of this.queue) launch.cancelled = true;
    this.queue.length = 0;
    this.opts.containment.sweep(null);
    return this.live.size;
  }

  private enqueue(launch: Launch): void {
    this.queue.push(launch);
    if (!this.draining) {
      this.draining = true;
      setImmediate(() => this.drain());
    }
  }

  private drain(): void {
    const until = performance.now() + this.sliceMs;
    // At least one launch per slice, however slow spawn is.
    do {
      const launch = this.queue.shift()!;
      if (!launch.cancelled) this.start(launch);
    } while (this.queue.length > 0 && performance.now() < until);
    if (this.queue.length > 0) setImmediate(() => this.drain());
    else this.draining = false;
  }

  private start(launch: Launch): void {
    const { input } = launch;
    if (this.live.size >= this.opts.maxLive) {
      const err: NodeJS.ErrnoException = new Error(
        `${this.live.size} nodes are alive and each needs some of the manager's file descriptors; ${this.opts.maxLiveReason ?? 'RLIMIT_NOFILE'}: raise it (ulimit -n, LimitNOFILE=) or start fewer nodes`,
      );
      err.code = 'EMFILE';
      this.fail(launch, err);
      return;
    }
    let fd: number | null = null;
    let pid: number | undefined;
    try {
      const opened = this.opts.output.open(input.generation, input.index);
      fd = opened.fd;
      launch.output = opened.output;
      pid = this.opts.spawner.spawn(
        this.opts.command,
        [...this.opts.args, input.interface, input.machineIp],
        { ...this.opts.env, ...this.opts.containment.env(), HERD_INDEX: String(input.index), HERD_GENERATION: String(input.generation) },
        fd,
        {
          exit: (code, signal) => this.exited(launch, code, signal),
          error: (err) => {
            if (launch.pid === null) this.fail(launch, err);
            else this.opts.logger.warn(`node ${input.index} (pid ${launch.pid}): ${err.message}`);
          },
        },
      );
    } catch (err) {
      this.fail(launch, err as NodeJS.ErrnoException);
      return;
    } finally {
      // The child holds its own copy of the descriptor.
      if (fd !== null) closeSync(fd);
    }
    if (pid === undefined) return; // the error follows
    launch.pid = pid;
    this.opts.output.started(launch.output!, pid);
    this.live.set(pid, launch);
    this.opts.containment.started(pid, input.index);
    launch.report({ type: 'process.started', pid, at: Date.now() });
  }

  private fail(launch: Launch, err: NodeJS.ErrnoException): void {
    launch.exited = true;
    const code = err.code ?? 'EUNKNOWN';
    this.opts.logger.error(`node ${launch.input.index} could not be started: ${err.message}`);
    launch.report({ type: 'process.failed', code, message: err.message });
  }

  private exited(launch: Launch, code: number | null, signal: NodeJS.Signals | null): void {
    const pid = launch.pid!;
    // The leader is reaped; whatever it left in its group dies with it.
    this.signalGroup(pid, 'SIGKILL');
    const escaped = this.opts.containment.reaped(pid, launch.input.index);
    if (escaped > 0) this.opts.logger.warn(`node ${launch.input.index} (pid ${pid}) left ${escaped} process(es) outside its group; killed through its cgroup`);
    launch.exited = true;
    const stopped = launch.graceTimer !== null;
    if (launch.graceTimer) clearTimeout(launch.graceTimer);
    this.live.delete(pid);
    if (this.live.size === 0 && this.queue.length === 0) this.opts.containment.idle();
    this.opts.output.exited(launch.output!);
    const report = (tail?: string[]) => {
      // Dropped meanwhile (manager shutdown, supervisor recovery): nobody to tell.
      if (!launch.cancelled) launch.report({ type: 'process.exited', exitCode: code, signal, escalated: launch.escalated, escaped, tail });
    };
    // The last lines are kept for a node that exited on its own (the ones status shows);
    // a reset stops every node, and reads none.
    if (stopped) report();
    else void this.opts.output.tail(launch.output!).then((tail) => report(tail ?? undefined));
  }

  /** SIGTERM to the group, SIGKILL after the grace period. */
  private stop(launch: Launch): void {
    if (launch.exited || launch.cancelled) return;
    if (launch.pid === null) {
      // Still queued: withdraw it.
      launch.cancelled = true;
      const i = this.queue.indexOf(launch);
      if (i >= 0) this.queue.splice(i, 1);
      launch.report({ type: 'process.failed', code: 'ECANCELED', message: 'launch cancelled before it started' });
      return;
    }
    if (launch.graceTimer) return;
    this.signalGroup(launch.pid, 'SIGTERM');
    // A stopped (SIGSTOP) node would hold SIGTERM pending until the grace runs out.
    this.signalGroup(launch.pid, 'SIGCONT');
    launch.graceTimer = setTimeout(() => {
      if (!launch.exited) {
        this.opts.logger.warn(`node ${launch.input.index} (pid ${launch.pid}) ignored SIGTERM for ${this.opts.killGraceMs} ms; sending SIGKILL`);
        launch.escalated = true;
        this.signalGroup(launch.pid!, 'SIGKILL');
      }
    }, this.opts.killGraceMs);
  }

  /** ESRCH (the group is already empty) is fine; any other error (EPERM) means it is not ours, and is thrown. */
  private signalGroup(pgid: number, signal: NodeJS.Signals): void {
    this.opts.spawner.kill(-pgid, signal);
  }

  private dispose(launch: Launch): void {
    launch.cancelled = true;
    if (launch.graceTimer) clearTimeout(launch.graceTimer);
    if (launch.pid !== null && !launch.exited) {
      // Normally unreachable (nodes are dropped only once reaped): a last resort.
      this.signalGroup(launch.pid, 'SIGKILL');
    }
  }
}
