// The supervisor: runs the manager statechart with real effects, turns its
// emitted replies into resolved promises, and recovers if the chart itself fails.
//
// XState v5 leaves a parent that errors in error status without stopping its
// spawned children, whose processes would then be orphaned. So an error here is
// caught at the boundary: logged with its stack, every node group is SIGKILLed
// through the launcher, every pending request is answered INTERNAL, and a fresh
// manager actor continues from the same generation number.

import { EventEmitter } from 'node:events';
import { createActor, fromPromise, InspectionEvent, Observer, SnapshotFrom } from 'xstate';
import { isLive, liveNodes, ManagerActor, managerMachine, ManagerMachineEvent, ManagerReply, statusOf, SweepInput } from '../machines/manager';
import { nodeMachine, NodeView } from '../machines/node';
import type { Containment } from './containment';
import type { Launcher } from './launcher';
import type { Logger } from './logger';
import type { ManagerEvent, NodePhase, StatusResult } from './protocol';
import type { LiveNodes } from './sampler';

type Machine = typeof managerMachine;

/** A manager event that expects a reply, minus the reply key the supervisor assigns. */
type Request = ManagerMachineEvent extends infer E ? (E extends { to: string } ? Omit<E, 'to'> : never) : never;

export interface SupervisorOptions {
  launcher: Launcher;
  containment: Containment;
  logger: Logger;
  maxQueue: number;
  /** The chart to run; tests pass a variant with a faulty action. */
  machine?: Machine;
  /** Receives XState's inspection events of the manager and its nodes (--inspect). */
  inspect?: Observer<InspectionEvent>;
}

export type ManagerSnapshot = SnapshotFrom<Machine>;

/** A command for the chart (not a node's connect) when accepted, and again with its reply when answered. */
export interface CommandNote { to: string; request: Request; reply?: ManagerReply }

export class Supervisor extends EventEmitter<{ event: [ManagerEvent]; phase: [NodeView, NodePhase]; snapshot: [ManagerSnapshot]; command: [CommandNote] }> {
  private actor!: ManagerActor;
  private readonly machine: Machine;
  private readonly pending = new Map<string, { resolve: (r: ManagerReply) => void; timer: NodeJS.Timeout | null; note: CommandNote | null }>();
  private nextKey = 1;

  constructor(private readonly opts: SupervisorOptions) {
    super();
    const machine = opts.machine ?? managerMachine;
    const { containment } = opts;
    this.machine = machine.provide({
      actors: {
        node: nodeMachine.provide({ actors: { process: opts.launcher.processLogic } }),
        sweep: fromPromise<number, SweepInput>(async ({ input }) =>
          containment.sweep(input.index === null ? null : { generation: input.generation, index: input.index }),
        ),
      },
    }) as Machine;
    this.startActor(0);
  }

  /**
   * Sends a command to the manager and resolves with its reply. `deadlineMs`
   * arms a `wait.expired` for waits that may never be met.
   */
  request(event: Request, deadlineMs?: number): Promise<ManagerReply> {
    const to = String(this.nextKey++);
    if (event.type === 'connect') {
      // A process of this run from an older generation (a late node, or an escaped
      // descendant) is refused and killed: it must not outlive its generation.
      // A live node of the current generation connecting itself (the common case, n at
      // once) is not one, and its /proc/<pid>/environ need not be read to know it.
      const { generation, nodes } = this.actor.getSnapshot().context;
      const own = nodes.some((n) => n.pid === event.pid && isLive(n));
      const leftover = own ? null : this.opts.containment.killLeftover(event.pid, generation);
      if (leftover) {
        const message = `pid ${event.pid} belongs to generation ${leftover.generation} of this manager, not the current generation ${generation}; it was killed`;
        this.opts.logger.warn(message);
        return Promise.resolve({ to, error: { code: 'UNKNOWN_NODE', message } });
      }
    }
    return new Promise((resolve) => {
      const timer = deadlineMs === undefined ? null : setTimeout(() => this.actor.send({ type: 'wait.expired', to }), deadlineMs);
      const note = event.type === 'connect' ? null : { to, request: event };
      this.pending.set(to, { resolve, timer, note });
      if (note) this.emit('command', note);
      this.actor.send({ ...event, to } as ManagerMachineEvent);
    });
  }

  status(): StatusResult {
    return statusOf(this.actor.getSnapshot());
  }

  /** The manager chart's current snapshot (its node actors are its children). */
  snapshot(): ManagerSnapshot {
    return this.actor.getSnapshot();
  }

  liveNodes(): LiveNodes {
    const snapshot = this.actor.getSnapshot();
    return { generation: snapshot.context.generation, nodes: liveNodes(snapshot) };
  }

  /** The current generation and its generate's n (without building the node list of `status`). */
  generation(): { generation: number; target: number } {
    const { generation, target } = this.actor.getSnapshot().context;
    return { generation, target };
  }

  /** Kills and reaps every node (a reset through the chart), then stops the actor. */
  async shutdown(): Promise<number> {
    const reply = await this.request({ type: 'reset' });
    this.actor.stop();
    return 'result' in reply ? (reply.result.killed as number) : 0;
  }

  private startActor(generation: number): void {
    const actor = createActor(this.machine, { input: { maxQueue: this.opts.maxQueue, generation }, inspect: this.opts.inspect });
    actor.on('reply', (reply) => this.deliver(reply));
    actor.on('publish', ({ event }) => this.emit('event', event));
    actor.on('phase', ({ view, from }) => this.emit('phase', view, from));
    actor.subscribe({ next: (snapshot) => this.emit('snapshot', snapshot), error: (err) => this.recover(actor, err) });
    this.actor = actor;
    actor.start();
  }

  private deliver(reply: ManagerReply): void {
    const waiting = this.pending.get(reply.to);
    if (!waiting) return;
    this.pending.delete(reply.to);
    if (waiting.timer) clearTimeout(waiting.timer);
    waiting.resolve(reply);
    if (waiting.note) this.emit('command', { ...waiting.note, reply });
  }

  private recover(failed: ManagerActor, err: unknown): void {
    const generation = failed.getSnapshot().context.generation;
    const killed = this.opts.launcher.killAll();
    this.opts.logger.error(
      `internal error in the manager statechart; killed ${killed} node process group(s) and restarted at generation ${generation}. Please report this with the log file: ${(err as Error)?.stack ?? String(err)}`,
    );
    for (const to of [...this.pending.keys()]) {
      this.deliver({ to, error: { code: 'INTERNAL', message: `internal error: ${(err as Error)?.message ?? String(err)}; all nodes were killed, the manager keeps serving` } });
    }
    this.startActor(generation);
  }
}
