// The statechart of the manager: one per host, parent of every node actor.
//
// State-changing commands (generate, reset, kill) are queued and applied one at a
// time, in arrival order. `generate` is reset-then-generate as one sequence:
//
//   idle -> dispatching -> resetting (stop every live node, wait until all are reaped,
//           then sweep for descendants that escaped their group)
//        -> cleared (drop the old actors) -> spawning (generation + 1, n new nodes)
//        -> idle, or -> rollingBack (a node failed to start: stop the rest, sweep) -> idle
//   idle -> dispatching -> killing (one node, then sweep for its strays) -> idle
//
// The sweep is the invoked actor `sweep`, supplied by src/ (a /proc scan for the
// run id); it answers how many stray processes it killed. A rolled-back
// generation's nodes stay listed (killed, or failed with the OS error) until the
// next reset.
//
// `connect`, `wait.expired` and node updates are handled in every state; `status`
// is a pure query of the snapshot (statusOf). Replies and published events leave
// through the actions `reply` and `publish`, which src/ supplies; this chart does
// no I/O and keeps no timers (a wait's deadline arrives as `wait.expired`).

import { ActorRefFrom, and, assign, enqueueActions, fromPromise, setup } from 'xstate';
import type { ManagerEvent, NodeInfo, NodePhase, ResetResult, StatusResult, StopOutcome, WaitMode, WireError } from '../src/protocol';
import { nodeMachine, NodeUpdate, NodeView } from './node';
import { stopChildren } from './stopchildren';

export type GenerateCommand = {
  type: 'generate';
  to: string;
  n: number;
  wait: WaitMode;
  interface: string;
  machineIp: string;
};
export type ResetCommand = { type: 'reset'; to: string };
export type KillCommand = { type: 'kill'; to: string; pid?: number; index?: number };
export type QueuedCommand = GenerateCommand | ResetCommand | KillCommand;

export type ManagerInput = {
  /** Queued state-changing commands beyond this many are refused with LIMIT. */
  maxQueue: number;
  /** Generation to continue from (a restarted manager actor keeps counting). */
  generation?: number;
};

export type ManagerMachineEvent =
  | QueuedCommand
  /** A node says it is up. `pgid` is the process group of `pid`, looked up by src/. */
  | { type: 'connect'; to: string; pid: number; pgid: number | null; nodeId?: unknown; at: number }
  /** The deadline of a `wait: "connected"` generate passed. */
  | { type: 'wait.expired'; to: string }
  | NodeUpdate;

/** A reply to the request identified by `to` (an opaque key chosen by src/). */
export type ManagerReply = { to: string; result: Record<string, unknown> } | { to: string; error: WireError };

/**
 * What leaves the chart, for src/ to deliver (`actor.on('reply' | 'publish' | 'phase', ...)`).
 * `phase` is every phase change of a node, the steps the protocol does not show included
 * (stopping, failed): src/ timestamps them for the timeline.
 */
export type ManagerEmitted =
  | ({ type: 'reply' } & ManagerReply)
  | { type: 'publish'; event: ManagerEvent }
  | { type: 'phase'; view: NodeView; from: NodePhase };

interface Waiter {
  to: string;
  generation: number;
  nodes: { index: number; pid: number }[];
}

export interface ManagerContext {
  maxQueue: number;
  generation: number;
  target: number;
  /** The manager's knowledge of its nodes, by index, from their `node.update`s. */
  nodes: NodeView[];
  /**
   * How many of `nodes` are in each phase, and how many have connected: what the
   * guards checked after every event (n node updates per generate) and the waits
   * read, rather than the whole list.
   */
  phases: Record<NodePhase, number>;
  connected: number;
  refs: ActorRefFrom<typeof nodeMachine>[];
  queue: QueuedCommand[];
  current: QueuedCommand | null;
  /** Indexes of the nodes live when the current reset began: the ones it kills. */
  resetStopped: number[];
  /** Stray processes the last sweep killed. */
  swept: number;
  waiters: Waiter[];
}

const LIVE: ReadonlySet<NodeView['phase']> = new Set(['launching', 'spawning', 'running', 'stopping']);
export const isLive = (n: NodeView) => LIVE.has(n.phase);
const isGone = (n: NodeView) => !isLive(n);
const noPhases = (): Record<NodePhase, number> => ({ launching: 0, spawning: 0, running: 0, stopping: 0, killed: 0, failed: 0 });
const liveCount = (p: Record<NodePhase, number>) => p.launching + p.spawning + p.running + p.stopping;

/** The protocol state of a node view, or null for nodes the protocol does not list. */
function protocolState(n: NodeView): NodeInfo['state'] | null {
  switch (n.phase) {
    case 'spawning':
      return 'spawning';
    case 'running':
      return 'running';
    case 'stopping':
      return n.connectedAt !== null ? 'running' : 'spawning';
    case 'killed':
      return 'killed';
    default:
      return null; // launching (no pid yet) and failed (never started)
  }
}

export function nodeInfo(n: NodeView): NodeInfo | null {
  const state = protocolState(n);
  if (state === null || n.pid === null || n.startedAt === null) return null;
  const info: NodeInfo = { index: n.index, pid: n.pid, state, startedAt: n.startedAt };
  if (n.nodeId !== undefined) info.nodeId = n.nodeId;
  if (n.connectedAt !== null) info.connectedAt = n.connectedAt;
  if (state === 'killed') {
    info.exitCode = n.exitCode;
    info.signal = n.signal;
    if (n.tail !== null) info.tail = n.tail;
  }
  return info;
}

/** What stopping nodes takes of enqueueActions' `enqueue`. */
interface StopSteps {
  sendTo(to: ManagerContext['refs'][number], event: { type: 'stop' }): void;
  emit(event: ManagerEmitted): void;
  assign(values: Pick<ManagerContext, 'nodes' | 'phases'>): void;
}

/**
 * Sends `stop` to each of `targets`. Spawning and running ones are stopping from now
 * on (a launching one is withdrawn instead, and reports failed): nodes do not report
 * stopping; the manager, which sent the stop, records it for all of them in one step.
 */
function stopNodes(context: ManagerContext, enqueue: StopSteps, targets: readonly NodeView[]): void {
  const nodes = context.nodes.slice();
  const phases = { ...context.phases };
  for (const n of targets) {
    enqueue.sendTo(context.refs[n.index], { type: 'stop' });
    if (n.phase !== 'spawning' && n.phase !== 'running') continue;
    const view: NodeView = { ...n, phase: 'stopping' };
    nodes[n.index] = view;
    phases[n.phase]--;
    phases.stopping++;
    enqueue.emit({ type: 'phase', view, from: n.phase });
  }
  enqueue.assign({ nodes, phases });
}

const asReply = (r: ManagerReply): ManagerEmitted => ({ type: 'reply', ...r });
const asPublish = (event: ManagerEvent): ManagerEmitted => ({ type: 'publish', event });

const pidList = (nodes: NodeView[]) => nodes.map((n) => ({ index: n.index, pid: n.pid as number }));

function findNode(nodes: NodeView[], cmd: KillCommand): NodeView | undefined {
  return cmd.index !== undefined ? nodes[cmd.index] : nodes.find((n) => n.pid === cmd.pid);
}

/** Resolves the waiters of `generation` that the node views now decide. */
function settleWaiters(waiters: Waiter[], nodes: NodeView[], generation: number, phases: Record<NodePhase, number>, connected: number) {
  const replies: ManagerReply[] = [];
  const remaining = waiters.filter((w) => {
    if (w.generation !== generation) return true;
    const exited = liveCount(phases) < nodes.length ? nodes.filter((n) => isGone(n) && n.connectedAt === null) : [];
    if (exited.length > 0) {
      const first = exited[0];
      const last = first.tail?.at(-1);
      const output = last !== undefined ? `; its last output line: ${JSON.stringify(last)}` : '';
      replies.push({
        to: w.to,
        error: {
          code: 'NODE_EXITED',
          message: `node ${first.index} (pid ${first.pid}) exited before it connected (exit code ${first.exitCode}, signal ${first.signal})${output}; herd logs ${first.index} shows its output`,
          details: exited.map((n) => ({ index: n.index, pid: n.pid, exitCode: n.exitCode, signal: n.signal })),
        },
      });
      return false;
    }
    if (connected === nodes.length) {
      replies.push({ to: w.to, result: { generation, nodes: w.nodes } });
      return false;
    }
    return true;
  });
  return { remaining, replies };
}

/** What the `sweep` actor is asked: the whole run (reset), or one node's strays (kill). */
export interface SweepInput {
  generation: number;
  index: number | null;
}

/**
 * The states of a command that stops nodes: wait until every node it stopped is
 * reaped, then sweep for their strays. The sweep is skipped when nothing was
 * stopped (`skip`): a kill naming no node must never sweep the whole run.
 */
function stopThenSweep(done: 'allGone' | 'killTargetGone', index: (c: ManagerContext) => number | null, skip: 'noNodes' | 'noKillTarget') {
  return {
    initial: 'stopping' as const,
    states: {
      stopping: {
        always: [
          { guard: and([done, skip]), target: 'swept' },
          { guard: done, target: 'sweeping' },
        ],
      },
      sweeping: {
        invoke: {
          src: 'sweep' as const,
          input: ({ context }: { context: ManagerContext }): SweepInput => ({ generation: context.generation, index: index(context) }),
          onDone: { target: 'swept', actions: { type: 'recordSweep' as const, params: ({ event }: { event: { output: number } }) => event.output } },
          // The sweep is best effort; the nodes themselves are already reaped.
          onError: { target: 'swept' },
        },
      },
      swept: { type: 'final' as const },
    },
  };
}

export const managerMachine = setup({
  types: {
    context: {} as ManagerContext,
    events: {} as ManagerMachineEvent,
    input: {} as ManagerInput,
    emitted: {} as ManagerEmitted,
  },
  actors: {
    node: nodeMachine,
    // Placeholder: src/ supplies the /proc sweep.
    sweep: fromPromise<number, SweepInput>(async () => 0),
  },
  actions: {
    enqueue: enqueueActions(({ context, event, enqueue }) => {
      const cmd = event as QueuedCommand;
      if (context.queue.length >= context.maxQueue) {
        enqueue.emit(asReply({ to: cmd.to, error: { code: 'LIMIT', message: `${context.queue.length} state-changing commands are already queued; wait for replies before sending more` } }));
        return;
      }
      enqueue.assign({ queue: [...context.queue, cmd] });
    }),

    recordSweep: assign((_, swept: number) => ({ swept })),

    dequeue: assign(({ context }) => ({ current: context.queue[0], queue: context.queue.slice(1) })),

    stopLive: enqueueActions(({ context, enqueue }) => stopNodes(context, enqueue, context.nodes.filter(isLive))),

    dropNodes: enqueueActions(({ context, enqueue }) => {
      enqueue(stopChildren(context.refs));
      enqueue.assign({ nodes: [], refs: [], phases: noPhases(), connected: 0 });
    }),

    spawnNodes: assign(({ context, spawn }) => {
      const cmd = context.current as GenerateCommand;
      const generation = context.generation + 1;
      const nodes: NodeView[] = [];
      const refs: ActorRefFrom<typeof nodeMachine>[] = [];
      for (let index = 0; index < cmd.n; index++) {
        nodes.push({ index, generation, phase: 'launching', pid: null, startedAt: null, connectedAt: null, exitCode: null, signal: null, outcome: null, escaped: 0, failure: null, tail: null });
        refs.push(spawn('node', { id: `n${index}`, input: { index, generation, interface: cmd.interface, machineIp: cmd.machineIp } }));
      }
      return { generation, target: cmd.n, nodes, refs, phases: { ...noPhases(), launching: cmd.n }, connected: 0 };
    }),

    replyReset: enqueueActions(({ context, enqueue }) => {
      const outcomes: Record<StopOutcome, number> = { exited: 0, terminated: 0, killed: 0 };
      const nodes: ResetResult['nodes'] = [];
      let cgroup = 0;
      const stopped = new Set(context.resetStopped);
      for (const n of context.nodes) {
        if (n.outcome === null || n.pid === null) continue; // never started
        // A node an earlier `kill` stopped was reported in that kill's reply.
        if (!stopped.has(n.index) && n.outcome !== 'exited') continue;
        cgroup += n.escaped;
        outcomes[n.outcome]++;
        nodes.push({ index: n.index, pid: n.pid, outcome: n.outcome, exitCode: n.exitCode, signal: n.signal });
      }
      const result: ResetResult = { killed: stopped.size, outcomes, nodes, strays: { cgroup, sweep: context.swept } };
      enqueue.emit(asReply({ to: context.current!.to, result: { ...result } }));
      enqueue.assign({ current: null });
    }),

    generated: enqueueActions(({ context, enqueue }) => {
      const cmd = context.current as GenerateCommand;
      const nodes = pidList(context.nodes);
      if (cmd.wait === 'connected' && cmd.n > 0) {
        const waiter = { to: cmd.to, generation: context.generation, nodes };
        // Nodes may already have connected or exited while the rest were starting.
        const settled = settleWaiters([waiter], context.nodes, context.generation, context.phases, context.connected);
        for (const r of settled.replies) enqueue.emit(asReply(r));
        enqueue.assign({ waiters: [...context.waiters, ...settled.remaining] });
      } else {
        enqueue.emit(asReply({ to: cmd.to, result: { generation: context.generation, nodes } }));
      }
      if (cmd.n === 0) enqueue.emit(asPublish({ event: 'ready', generation: context.generation, n: 0 }));
      enqueue.assign({ current: null });
    }),

    replySpawnFailed: enqueueActions(({ context, enqueue }) => {
      // ECANCELED: launches withdrawn after the first failure, not OS errors.
      const failed = context.nodes.filter((n) => n.failure !== null && n.failure.code !== 'ECANCELED');
      const first = failed[0];
      enqueue.emit(asReply({
          to: context.current!.to,
          error: {
            code: 'SPAWN_FAILED',
            message: `could not start node ${first.index}: ${first.failure!.message}; check --node-command and the host's process limits`,
            details: failed.map((n) => ({ index: n.index, code: n.failure!.code })),
          },
        }),
      );
      enqueue.assign({ current: null });
    }),

    killTarget: enqueueActions(({ context, enqueue }) => {
      const node = findNode(context.nodes, context.current as KillCommand);
      if (node && isLive(node) && node.phase !== 'stopping') stopNodes(context, enqueue, [node]);
    }),

    replyKill: enqueueActions(({ context, enqueue }) => {
      const cmd = context.current as KillCommand;
      const node = findNode(context.nodes, cmd);
      const reply: ManagerReply =
        node && node.pid !== null
          ? { to: cmd.to, result: { pid: node.pid, exitCode: node.exitCode, signal: node.signal, outcome: node.outcome } }
          : {
              to: cmd.to,
              error: {
                code: 'UNKNOWN_NODE',
                message: `${cmd.index !== undefined ? `index ${cmd.index}` : `pid ${cmd.pid}`} names no node of generation ${context.generation}; run status to list them`,
              },
            };
      enqueue.emit(asReply(reply));
      enqueue.assign({ current: null });
    }),

    connect: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'connect') return;
      const node = context.nodes.find((n) => n.pid !== null && (n.pid === event.pid || n.pid === event.pgid));
      if (!node || (node.phase !== 'spawning' && node.phase !== 'running')) {
        const why = node ? `node ${node.index} of generation ${context.generation} is ${node.phase}` : `it is not a node of generation ${context.generation} (nor in the process group of one)`;
        enqueue.emit(asReply({ to: event.to, error: { code: 'UNKNOWN_NODE', message: `pid ${event.pid} cannot connect: ${why}` } }));
        return;
      }
      enqueue.sendTo(context.refs[node.index], { type: 'connect', at: event.at, nodeId: event.nodeId });
      enqueue.emit(asReply({ to: event.to, result: { index: node.index, generation: context.generation } }));
    }),

    nodeUpdate: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'node.update') return;
      const { view } = event;
      if (view.generation !== context.generation || context.refs[view.index] === undefined) return;
      const before = context.nodes[view.index];
      const nodes = context.nodes.slice();
      nodes[view.index] = view;
      let { phases } = context;
      if (view.phase !== before.phase) {
        phases = { ...phases, [before.phase]: phases[before.phase] - 1, [view.phase]: phases[view.phase] + 1 };
        enqueue.emit({ type: 'phase', view, from: before.phase });
      }
      const connecting = view.connectedAt !== null && before.connectedAt === null;
      const connected = context.connected + (connecting ? 1 : 0);
      enqueue.assign({ nodes, phases, connected });

      const state = protocolState(view);
      if (state !== null && view.pid !== null && state !== protocolState(before)) {
        const ev: ManagerEvent = { event: 'node', generation: view.generation, index: view.index, pid: view.pid, state };
        if (state === 'killed') Object.assign(ev, { exitCode: view.exitCode, signal: view.signal });
        enqueue.emit(asPublish(ev));
      }
      if (connecting && connected === nodes.length) {
        enqueue.emit(asPublish({ event: 'ready', generation: context.generation, n: nodes.length }));
      }
      // While still spawning, the generate's own completion settles its waiter.
      if (context.waiters.length > 0) {
        const settled = settleWaiters(context.waiters, nodes, context.generation, phases, connected);
        for (const r of settled.replies) enqueue.emit(asReply(r));
        enqueue.assign({ waiters: settled.remaining });
      }
    }),

    expireWaiter: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'wait.expired') return;
      const waiter = context.waiters.find((w) => w.to === event.to);
      if (!waiter) return; // already answered
      const pending = context.nodes.filter((n) => n.connectedAt === null).map((n) => n.index);
      enqueue.emit(asReply({
          to: waiter.to,
          error: {
            code: 'TIMEOUT',
            message: `${pending.length} of ${waiter.nodes.length} nodes had not connected when the wait ran out; they keep running (raise timeoutMs, or check the nodes' logs)`,
            details: { notConnected: pending },
          },
        }),
      );
      enqueue.assign({ waiters: context.waiters.filter((w) => w !== waiter) });
    }),
  },
  guards: {
    hasQueued: ({ context }) => context.queue.length > 0,
    isKill: ({ context }) => context.current?.type === 'kill',
    isGenerate: ({ context }) => context.current?.type === 'generate',
    allGone: ({ context }) => liveCount(context.phases) === 0,
    noNodes: ({ context }) => context.nodes.length === 0,
    noKillTarget: ({ context }) => !findNode(context.nodes, context.current as KillCommand),
    anyFailed: ({ context }) => context.phases.failed > 0,
    noneLaunching: ({ context }) => context.phases.launching === 0,
    killTargetGone: ({ context }) => {
      const node = findNode(context.nodes, context.current as KillCommand);
      return !node || isGone(node);
    },
  },
}).createMachine({
  id: 'manager',
  context: ({ input }) => ({
    maxQueue: input.maxQueue,
    generation: input.generation ?? 0,
    target: 0,
    nodes: [],
    phases: noPhases(),
    connected: 0,
    refs: [],
    queue: [],
    current: null,
    resetStopped: [],
    swept: 0,
    waiters: [],
  }),
  on: {
    generate: { actions: 'enqueue' },
    reset: { actions: 'enqueue' },
    kill: { actions: 'enqueue' },
    connect: { actions: 'connect' },
    'node.update': { actions: 'nodeUpdate' },
    'wait.expired': { actions: 'expireWaiter' },
  },
  initial: 'idle',
  states: {
    idle: {
      always: { guard: 'hasQueued', target: 'dispatching' },
    },
    dispatching: {
      entry: 'dequeue',
      always: [{ guard: 'isKill', target: 'killing' }, { target: 'resetting' }],
    },
    resetting: {
      entry: [assign({ resetStopped: ({ context }) => context.nodes.filter(isLive).map((n) => n.index), swept: 0 }), 'stopLive'],
      ...stopThenSweep('allGone', () => null, 'noNodes'),
      onDone: 'cleared',
    },
    cleared: {
      always: [
        { guard: 'isGenerate', target: 'spawning', actions: 'dropNodes' },
        { target: 'idle', actions: ['replyReset', 'dropNodes'] },
      ],
    },
    spawning: {
      entry: 'spawnNodes',
      always: [
        { guard: 'anyFailed', target: 'rollingBack' },
        { guard: 'noneLaunching', target: 'idle', actions: 'generated' },
      ],
    },
    rollingBack: {
      entry: [assign({ swept: 0 }), 'stopLive'],
      ...stopThenSweep('allGone', () => null, 'noNodes'),
      onDone: { target: 'idle', actions: 'replySpawnFailed' },
    },
    killing: {
      entry: [assign({ swept: 0 }), 'killTarget'],
      ...stopThenSweep('killTargetGone', (c) => (findNode(c.nodes, c.current as KillCommand) as NodeView).index, 'noKillTarget'),
      onDone: { target: 'idle', actions: 'replyKill' },
    },
  },
});

export type ManagerActor = ActorRefFrom<typeof managerMachine>;
type ManagerSnapshot = ReturnType<ManagerActor['getSnapshot']>;

/** The top-level state's name ("resetting", not "resetting.sweeping"): what `status` reports. */
function stateName(value: ManagerSnapshot['value']): string {
  return typeof value === 'string' ? value : Object.keys(value)[0];
}

/** The `status` result: a pure read of the manager's snapshot. */
export function statusOf(snapshot: ManagerSnapshot): StatusResult {
  const { context } = snapshot;
  const counts = { spawning: 0, running: 0, killed: 0 };
  const nodes: NodeInfo[] = [];
  const failed: StatusResult['failed'] = [];
  for (const n of context.nodes) {
    if (n.phase === 'launching') counts.spawning++;
    if (n.failure !== null && n.failure.code !== 'ECANCELED') failed.push({ index: n.index, ...n.failure });
    const info = nodeInfo(n);
    if (!info) continue;
    counts[info.state]++;
    nodes.push(info);
  }
  return { state: stateName(snapshot.value), generation: context.generation, target: context.target, counts, nodes, failed };
}

/** Pids and indexes of the live nodes (for the stats sampler). */
export function liveNodes(snapshot: ManagerSnapshot): { pid: number; index: number }[] {
  return snapshot.context.nodes.filter((n) => isLive(n) && n.pid !== null).map((n) => ({ pid: n.pid as number, index: n.index }));
}
