// Model-based tests of the two statecharts (@xstate/graph).
//
// Node: the pure chart is traversed over a small, fixed event domain. Every simple
// path (getSimplePaths), and every edge (a shortest path plus one event, which
// covers the self-loops simple paths skip), is replayed against a fresh actor with
// a stub process actor and recorded reports; the invariants are checked after
// every step.
//
// Manager: its behaviour depends on its node children, so the traversal runs over
// a "world" logic whose snapshot is the list of commands sent so far: requests to
// the manager, OS events for the stub processes of its nodes, the end of an effect
// actor (the sweep). Each transition of the world replays that list against a
// fresh manager with real node machines; their `process` actor behaves like
// src/launcher.ts (a stop before the launch ran is answered with ECANCELED at
// once; an exit only happens when the model says so). A replay checks the
// invariants after its newest step (the prefix is the parent state's own path,
// checked when it was reached) and, the first time an abstract state is reached,
// drains the world (deadlines expire, launches start, stopped processes exit,
// sweeps end) to check that every request is answered exactly once. The abstract
// state (manager state, queue, current command, node phases, waiters) bounds the
// traversal; getShortestPaths gives one path per abstract state, and each is
// replayed again with every step checked.
//
// Transition coverage is measured with the inspection API (microsteps carry the
// transition definitions taken) against the transitions derived from the machine
// definitions, so a transition added to a chart and never exercised fails.

import { createActor, fromCallback, fromTransition } from 'xstate';
import type { ActorLogic, AnyActorRef, AnyStateMachine, InspectionEvent, Snapshot } from 'xstate';
import { getShortestPaths, getSimplePaths } from '@xstate/graph';
import { machineTransitions } from '../src/chart';
import { ManagerEmitted, ManagerMachineEvent, managerMachine, QueuedCommand, statusOf } from '../machines/manager';
import { NodeEvent, NodeInput, nodeMachine, NodeView, ProcessEvent, ProcessStop } from '../machines/node';

// ---------------------------------------------------------------------------
// Shared helpers

type ExitEvent = Extract<ProcessEvent, { type: 'process.exited' }>;
/** process.exited with whatever extra fields the launcher reports set to neutral values; like the launcher, last lines only for an exit on its own. */
const exitEvent = (exitCode: number | null, signal: string | null, escalated = false, tail?: string[]): ExitEvent =>
  ({ type: 'process.exited', exitCode, signal, escalated, escaped: 0, tail }) as ExitEvent;

/**
 * Every transition a chart defines (event transitions, including invoke done/error
 * and delayed ones, and eventless `always` transitions), by definition object,
 * with a readable label: src/chart.ts reads them from the machine.
 */
const transitionCatalogue = (machine: AnyStateMachine) => new Map<unknown, string>(machineTransitions(machine).map((t) => [t.definition, t.label]));

/** The phase a node's state value stands for (the `phase` of its reports). */
function phaseOf(value: unknown): string {
  if (typeof value === 'string') return value;
  const spawning = (value as Record<string, unknown>)?.spawning;
  if (spawning === 'launching') return 'launching';
  if (spawning !== undefined) return 'spawning';
  return JSON.stringify(value);
}

const NODE_CHILD_ID = /^n(\d+)$/;
/** The generation a node child belongs to (ids are reused across generations: `n<index>`). */
const generationOf = (ref: AnyActorRef): number => (ref.getSnapshot() as { context: { input: NodeInput } }).context.input.generation;


interface Violation {
  invariant: string;
  message: string;
  path: string;
}

/** Violations by invariant, the first (shortest) few of each kept. */
class Violations {
  readonly byInvariant = new Map<string, Violation[]>();
  add(v: Violation) {
    const list = this.byInvariant.get(v.invariant) ?? [];
    if (list.length < 3 && !list.some((x) => x.message === v.message && x.path === v.path)) list.push(v);
    this.byInvariant.set(v.invariant, list);
  }
  of(invariantOrBug: string): string[] {
    return (this.byInvariant.get(invariantOrBug) ?? []).map((v) => `${v.invariant}: ${v.message}\n    path: ${v.path}`);
  }
}

// ---------------------------------------------------------------------------
// Node machine

const NODE_INPUT: NodeInput = { index: 0, generation: 1, interface: '127.0.0.1:7071', machineIp: '127.0.0.1' };

/** A small domain: one of each process event (two exits), two connects, stop. */
const NODE_EVENTS: NodeEvent[] = [
  { type: 'process.started', pid: 7, at: 1 },
  { type: 'process.failed', code: 'EAGAIN', message: 'spawn x EAGAIN' },
  exitEvent(3, null, false, ['last words']),
  exitEvent(null, 'SIGTERM'),
  { type: 'connect', at: 2, nodeId: 'a' },
  { type: 'connect', at: 3, nodeId: 'b' },
  { type: 'stop' },
];

const NODE_INVARIANTS = ['no-error', 'killed-only-after-exit', 'exit-kept', 'final-is-final', 'stop-reaches-process', 'reports-match-phase'] as const;

/** The chart with its effects stubbed: the only thing traversal needs. */
const nodeForTraversal = nodeMachine.provide({
  actors: { process: fromCallback<ProcessStop, NodeInput>(() => undefined) },
  actions: { report: () => undefined, stopProcess: () => undefined },
});

// The chart as replayed: the process stub counts stops, reports are recorded.
let nodeRun: { stops: number; disposed: boolean; reports: { phase: string; view: Record<string, unknown> }[] } | null = null;
const nodeForReplay = nodeMachine.provide({
  actors: {
    process: fromCallback<ProcessStop, NodeInput>(({ receive }) => {
      const run = nodeRun!;
      receive(() => run.stops++);
      return () => (run.disposed = true);
    }),
  },
  actions: {
    report: ({ context }, phase) => {
      const { input: _input, ...rest } = context;
      nodeRun!.reports.push({ phase: phase as string, view: rest });
    },
  },
});
const nodeCatalogue = transitionCatalogue(nodeForReplay);

const describeNodeEvent = (e: NodeEvent) =>
  e.type === 'process.exited' ? `exited(${e.exitCode},${e.signal})` : e.type === 'connect' ? `connect(${String(e.nodeId)})` : e.type.replace('process.', '');

function replayNodePath(events: NodeEvent[], violations: Violations, taken: Set<unknown>): void {
  const run = { stops: 0, disposed: false, reports: [] as { phase: string; view: Record<string, unknown> }[] };
  nodeRun = run;
  const path = events.map(describeNodeEvent).join(' → ') || '(initial)';
  const violate = (invariant: (typeof NODE_INVARIANTS)[number], message: string) => violations.add({ invariant, message, path });
  const actor = createActor(nodeForReplay, {
    input: NODE_INPUT,
    inspect: (ev: InspectionEvent) => {
      if (ev.type === '@xstate.microstep') for (const t of ev._transitions) taken.add(t);
      if (ev.type === '@xstate.snapshot' && ev.snapshot.status === 'error') violate('no-error', `${(ev.actorRef as AnyActorRef).id} in error status: ${String(ev.snapshot.error)}`);
    },
  });
  actor.subscribe({ error: (err) => violate('no-error', `node actor errored: ${String(err)}`) });
  actor.start();
  let prev = actor.getSnapshot();
  for (const [i, event] of events.entries()) {
    const stopsBefore = run.stops;
    actor.send(event);
    const snap = actor.getSnapshot();
    const phase = phaseOf(snap.value);
    const prevPhase = phaseOf(prev.value);
    const at = `step ${i + 1} (${describeNodeEvent(event)}) ${prevPhase} -> ${phase}`;
    if (phase === 'killed' && prevPhase !== 'killed') {
      if (event.type !== 'process.exited') violate('killed-only-after-exit', `${at}: killed without an exit`);
      else if (snap.context.exitCode !== event.exitCode || snap.context.signal !== event.signal)
        violate('exit-kept', `${at}: exit (${event.exitCode}, ${event.signal}) recorded as (${snap.context.exitCode}, ${snap.context.signal})`);
    }
    if (prev.status === 'done' && (snap.value !== prev.value || snap.context !== prev.context)) violate('final-is-final', `${at}: a final node changed`);
    if (snap.status === 'done' && !run.disposed) violate('final-is-final', `${at}: final node's process actor was not stopped`);
    if (phase === 'stopping' && prevPhase !== 'stopping' && run.stops !== stopsBefore + 1) violate('stop-reaches-process', `${at}: entered stopping, process got ${run.stops - stopsBefore} stops`);
    if (event.type === 'stop' && prevPhase === 'launching' && run.stops !== stopsBefore + 1) violate('stop-reaches-process', `${at}: stop while launching did not reach the process`);
    if (phase !== 'launching') {
      const last = run.reports[run.reports.length - 1];
      // Stopping is the one phase a node does not report: the manager, which sent the stop, records it.
      const expected = phase === 'stopping' ? ['spawning', 'running'] : [phase];
      if (!last || !expected.includes(last.phase)) violate('reports-match-phase', `${at}: last report is ${last?.phase ?? 'none'}`);
      else
        for (const key of ['pid', 'startedAt', 'connectedAt', 'nodeId', 'exitCode', 'signal', 'failure', 'tail'] as const)
          if (JSON.stringify(last.view[key]) !== JSON.stringify(snap.context[key]))
            violate('reports-match-phase', `${at}: parent told ${key}=${JSON.stringify(last.view[key])}, node has ${JSON.stringify(snap.context[key])}`);
    }
    prev = snap;
  }
  actor.stop();
  nodeRun = null;
}

// ---------------------------------------------------------------------------
// Manager machine: the world model

/** Two queued commands: enough to see one dropped or reordered, and LIMIT beyond. */
const MAX_QUEUE = 2;
const UNKNOWN_PID = 999_999;
const pidOf = (generation: number, index: number) => 1000 * generation + 10 + index;

/** What the model can do: requests to the manager, OS events of a node's process, an effect actor's end. */
type Cmd =
  | { type: 'generate'; n: 0 | 1 | 2; wait: 'spawned' | 'connected' }
  | { type: 'reset' }
  | { type: 'kill'; index: 0 | 1 }
  | { type: 'kill'; pid: 'unknown' }
  | { type: 'connect'; from: 0 | 1 | 'group-of-1' | 'unknown' }
  | { type: 'wait.expired'; which: 'oldest' | 'unknown' }
  | { type: 'process'; index: number; what: 'started' | 'failed' | 'exited' }
  | { type: 'effect'; outcome: 'done' | 'error' }
  | { type: 'stale.update' };

const GENERATES: Cmd[] = [
  { type: 'generate', n: 0, wait: 'spawned' },
  { type: 'generate', n: 1, wait: 'connected' },
  { type: 'generate', n: 2, wait: 'spawned' },
  { type: 'generate', n: 2, wait: 'connected' },
];

function describeCmd(c: Cmd): string {
  switch (c.type) {
    case 'generate':
      return `generate(${c.n},${c.wait})`;
    case 'kill':
      return 'index' in c ? `kill(index ${c.index})` : `kill(pid ${c.pid})`;
    case 'connect':
      return `connect(${c.from})`;
    case 'wait.expired':
      return `wait.expired(${c.which})`;
    case 'process':
      return `node${c.index}.${c.what}`;
    case 'effect':
      return `effect.${c.outcome}`;
    default:
      return c.type;
  }
}
const describePath = (cmds: readonly Cmd[]) => cmds.map(describeCmd).join(' → ') || '(initial)';

/** A stub process: the model plays the OS through `send`. */
interface Proc {
  generation: number;
  index: number;
  send: (e: ProcessEvent) => void;
  started: boolean;
  ended: boolean;
  stops: number;
  disposed: boolean;
  exit: { exitCode: number | null; signal: string | null; outcome: string } | null;
}

type Reply = Extract<ManagerEmitted, { type: 'reply' }>;

const MANAGER_INVARIANTS = [
  'no-error',
  'killed-only-after-exit',
  'exit-kept',
  'one-command-in-flight',
  'applied-in-arrival-order',
  'at-most-one-reply',
  'replies-truthful',
  'no-stale-waiters',
  'every-request-answered',
  'generation-steps-by-one',
  'no-stale-children',
  'view-matches-node',
  'status-counts',
  'tallies-match-list',
  'no-process-dropped-alive',
  'sweep-after-reap',
] as const;
type ManagerInvariant = (typeof MANAGER_INVARIANTS)[number];

interface ManagerRun {
  procs: Map<string, Proc>;
  teardown: boolean;
  violate: (invariant: ManagerInvariant, message: string) => void;
}
let managerRun: ManagerRun | null = null;

/** Behaves like src/launcher.ts: a stop before the launch ran withdraws it (ECANCELED, synchronously). */
const processStub = fromCallback<ProcessStop, NodeInput>(({ input, sendBack, receive }) => {
  const run = managerRun!;
  const p: Proc = { generation: input.generation, index: input.index, send: sendBack, started: false, ended: false, stops: 0, disposed: false, exit: null };
  run.procs.set(`${input.generation}:${input.index}`, p);
  receive(() => {
    p.stops++;
    if (!p.started && !p.ended) {
      p.ended = true;
      sendBack({ type: 'process.failed', code: 'ECANCELED', message: 'launch cancelled before it started' });
    }
  });
  return () => {
    p.disposed = true;
    if (!p.ended && !run.teardown) run.violate('no-process-dropped-alive', `process of node ${p.index} (generation ${p.generation}) was stopped while ${p.started ? 'running' : 'launching'}`);
  };
});

/**
 * Every other actor the manager invokes (today the post-reap `sweep`) does I/O in
 * src/: here it is a stub that stays active until the model completes it (done,
 * with an output of 1) or fails it, synchronously.
 */
type EffectSnapshot = Snapshot<unknown> & { input: unknown };
type EffectEvent = { type: 'effect.done'; output: unknown } | { type: 'effect.error' };
const effectStub: ActorLogic<EffectSnapshot, EffectEvent, unknown> = {
  getInitialSnapshot: (_scope, input) => ({ status: 'active', output: undefined, error: undefined, input }),
  transition: (snap, event) =>
    event.type === 'effect.done'
      ? { status: 'done', output: event.output, error: undefined, input: snap.input }
      : event.type === 'effect.error'
        ? { status: 'error', output: undefined, error: new Error('effect failed (stub)'), input: snap.input }
        : snap,
  getPersistedSnapshot: (snap) => snap,
};
const EFFECT_ACTORS = Object.keys(managerMachine.implementations.actors).filter((src) => src !== 'node');

const nodeForManager = nodeMachine.provide({ actors: { process: processStub } });
const managerForReplay = managerMachine.provide({
  actors: { node: nodeForManager, ...Object.fromEntries(EFFECT_ACTORS.map((src) => [src, effectStub])) } as Parameters<typeof managerMachine.provide>[0]['actors'],
});
const managerCatalogue = transitionCatalogue(managerForReplay);
const nodeInManagerCatalogue = transitionCatalogue(nodeForManager);

type ManagerSnapshot = ReturnType<ReturnType<typeof createActor<typeof managerForReplay>>['getSnapshot']>;
const topState = (value: ManagerSnapshot['value']) => (typeof value === 'string' ? value : Object.keys(value)[0]);
const isGoneView = (n: NodeView) => !['launching', 'spawning', 'running', 'stopping'].includes(n.phase);

interface Outcome {
  key: string;
  enabled: Cmd[];
}

/**
 * Replays `cmds` against a fresh manager, checking the invariants after every
 * step; then (with `drain`) lets the world run to rest and checks that every
 * request was answered exactly once.
 */
function runManager(cmds: readonly Cmd[], violations: Violations, taken: Set<unknown>, opts: { drain: boolean | ((key: string) => boolean); checkFrom: number }): Outcome {
  const path = describePath(cmds);
  const run: ManagerRun = {
    procs: new Map(),
    teardown: false,
    violate: (invariant, message) => violations.add({ invariant, message, path }),
  };
  managerRun = run;
  const { violate } = run;

  const replies: (Reply & { step: number })[] = [];
  /** The generation while each command was being applied (emits are delivered after the macrostep). */
  const appliedIn = new Map<string, number>();
  /** Live nodes when each command was taken off the queue. */
  const liveAtDequeue = new Map<string, number>();
  let lastApplied = 0;
  const arrival = (to: string) => Number(to.split('#')[1]);
  const requests = new Map<string, 'generate' | 'reset' | 'kill' | 'connect'>();
  const refused = new Set<string>(); // LIMIT: never queued
  let step = 0;
  let generation = 0;
  const incremented = new Set<unknown>();
  const nodePhase = new Map<AnyActorRef, string>();

  const actor = createActor(managerForReplay, {
    input: { maxQueue: MAX_QUEUE },
    inspect: (ev: InspectionEvent) => {
      if (ev.type === '@xstate.microstep') {
        for (const t of ev._transitions) taken.add(t);
        if (ev.actorRef === actor) {
          const ctx = (ev.snapshot as ManagerSnapshot).context;
          if (ctx.current) {
            const to = ctx.current.to;
            if (!liveAtDequeue.has(to)) {
              liveAtDequeue.set(to, ctx.nodes.filter((n) => !isGoneView(n)).length);
              if (arrival(to) < lastApplied) violate('applied-in-arrival-order', `step ${step}: ${to} applied after ${describeTo(lastApplied)}`);
              lastApplied = arrival(to);
            }
            appliedIn.set(to, ctx.generation);
          }
          if (ctx.generation !== generation) {
            const cur = ctx.current;
            if (ctx.generation !== generation + 1) violate('generation-steps-by-one', `step ${step}: generation ${generation} -> ${ctx.generation}`);
            else if (!cur || cur.type !== 'generate') violate('generation-steps-by-one', `step ${step}: generation advanced while applying ${cur?.type ?? 'nothing'}`);
            else if (incremented.has(cur)) violate('generation-steps-by-one', `step ${step}: one generate (${cur.to}) advanced the generation twice`);
            if (cur) incremented.add(cur);
            generation = ctx.generation;
          }
        }
      }
      if (ev.type === '@xstate.snapshot') {
        const ref = ev.actorRef as AnyActorRef;
        const isNode = NODE_CHILD_ID.test(ref.id);
        if (ev.snapshot.status === 'error' && (isNode || ref === actor))
          violate('no-error', `step ${step}: ${ref.id || 'manager'} in error status: ${String(ev.snapshot.error)}`);
        if (isNode) {
          const snap = ev.snapshot as unknown as { value: unknown; context: { exitCode: number | null; signal: string | null } };
          const phase = phaseOf(snap.value);
          const before = nodePhase.get(ref);
          nodePhase.set(ref, phase);
          if (phase === 'killed' && before !== 'killed') {
            const e = ev.event as ProcessEvent;
            if (e.type !== 'process.exited') violate('killed-only-after-exit', `step ${step}: ${ref.id} killed on ${e.type}`);
            else if (snap.context.exitCode !== e.exitCode || snap.context.signal !== e.signal)
              violate('exit-kept', `step ${step}: ${ref.id} exit (${e.exitCode}, ${e.signal}) recorded as (${snap.context.exitCode}, ${snap.context.signal})`);
          }
        }
      }
    },
  });
  actor.on('reply', (r) => {
    if (!requests.has(r.to)) violate('at-most-one-reply', `step ${step}: reply to ${r.to}, which nobody asked`);
    if (replies.some((x) => x.to === r.to)) violate('at-most-one-reply', `step ${step}: second reply to ${r.to}: ${JSON.stringify(r)}`);
    if ('error' in r && r.error.code === 'LIMIT') refused.add(r.to);
    replies.push({ ...r, step });
  });
  actor.subscribe({ error: (err) => violate('no-error', `step ${step}: manager errored: ${String(err)}`) });
  actor.start();

  const snapshot = () => actor.getSnapshot();
  const ctx = () => snapshot().context;
  const proc = (index: number) => {
    const p = run.procs.get(`${ctx().generation}:${index}`);
    return p && !p.disposed ? p : undefined;
  };
  const effects = () =>
    Object.entries(snapshot().children as Record<string, AnyActorRef | undefined>)
      .filter(([id, ref]) => ref && !NODE_CHILD_ID.test(id) && ref.getSnapshot().status === 'active')
      .map(([, ref]) => ref!);
  const send = (e: ManagerMachineEvent) => actor.send(e);
  const sentCmd = new Map<string, Cmd>();
  const describeTo = (n: number) => [...requests.keys()].find((to) => arrival(to) === n) ?? `#${n}`;

  function apply(c: Cmd) {
    const to = `${c.type}#${step}`;
    sentCmd.set(to, c);
    switch (c.type) {
      case 'generate':
        requests.set(to, 'generate');
        return send({ type: 'generate', to, n: c.n, wait: c.wait, interface: '127.0.0.1:7071', machineIp: '127.0.0.1' });
      case 'reset':
        requests.set(to, 'reset');
        return send({ type: 'reset', to });
      case 'kill':
        requests.set(to, 'kill');
        return send('index' in c ? { type: 'kill', to, index: c.index } : { type: 'kill', to, pid: UNKNOWN_PID });
      case 'connect': {
        requests.set(to, 'connect');
        const g = ctx().generation;
        const pid = c.from === 0 || c.from === 1 ? pidOf(g, c.from) : c.from === 'group-of-1' ? 50_000 + step : UNKNOWN_PID;
        const pgid = c.from === 'group-of-1' ? pidOf(g, 1) : pid;
        return send({ type: 'connect', to, pid, pgid, at: 10_000 + step, nodeId: `id${step}` });
      }
      case 'wait.expired':
        return send({ type: 'wait.expired', to: c.which === 'oldest' && ctx().waiters[0] ? ctx().waiters[0].to : 'nobody' });
      case 'stale.update': {
        const g = ctx().generation - 1;
        const view = { index: 0, generation: g, phase: 'killed', pid: pidOf(g, 0), startedAt: 1, connectedAt: 2, exitCode: 0, signal: null, outcome: 'exited', escaped: 0, failure: null, tail: null };
        return send({ type: 'node.update', view: view as unknown as NodeView });
      }
      case 'effect': {
        const ref = effects()[0];
        return ref.send(c.outcome === 'done' ? { type: 'effect.done', output: 1 } : { type: 'effect.error' });
      }
      case 'process': {
        const p = proc(c.index)!;
        if (c.what === 'started') {
          p.started = true;
          return p.send({ type: 'process.started', pid: pidOf(p.generation, p.index), at: 20_000 + step });
        }
        p.ended = true;
        if (c.what === 'failed') return p.send({ type: 'process.failed', code: 'EAGAIN', message: 'spawn x EAGAIN' });
        // A stopped process dies of SIGTERM, or (every other step) of SIGKILL after the grace period.
        const escalated = p.stops > 0 && step % 2 === 0;
        p.exit = p.stops === 0 ? { exitCode: 3, signal: null, outcome: 'exited' } : escalated ? { exitCode: null, signal: 'SIGKILL', outcome: 'killed' } : { exitCode: null, signal: 'SIGTERM', outcome: 'terminated' };
        return p.send(exitEvent(p.exit.exitCode, p.exit.signal, escalated, p.stops === 0 ? [`step ${step}`] : undefined));
      }
    }
  }

  /** Exit code, signal and (where the chart keeps one) outcome agree with the process's exit. */
  const sameExit = (p: Proc | undefined, got: { exitCode?: unknown; signal?: unknown; outcome?: unknown }) =>
    !!p?.exit && got.exitCode === p.exit.exitCode && got.signal === p.exit.signal && (got.outcome === undefined || got.outcome === p.exit.outcome);
  const exitText = (got: { exitCode?: unknown; signal?: unknown; outcome?: unknown }) => JSON.stringify({ exitCode: got.exitCode, signal: got.signal, outcome: got.outcome });

  function check(label: string) {
    if (step < opts.checkFrom) return;
    const snap = snapshot();
    const c = snap.context;
    const at = `${label} [${JSON.stringify(snap.value)}]`;
    // One state-changing command in flight: applied, not queued, not a pending wait, not answered.
    const answered = new Set(replies.map((r) => r.to));
    const queued = new Set(c.queue.map((q: QueuedCommand) => q.to));
    const waiting = new Set(c.waiters.map((w) => w.to));
    const inFlight = [...requests].filter(([to, kind]) => kind !== 'connect' && !answered.has(to) && !queued.has(to) && !waiting.has(to)).map(([to]) => to);
    const expected = c.current ? [c.current.to] : [];
    if (JSON.stringify(inFlight) !== JSON.stringify(expected)) violate('one-command-in-flight', `${at}: in flight ${JSON.stringify(inFlight)}, current ${JSON.stringify(expected)}`);
    // Node children belong to the current generation; a finished reset leaves none.
    const children = Object.entries(snap.children as Record<string, AnyActorRef | undefined>)
      .filter(([id, ref]) => ref && NODE_CHILD_ID.test(id))
      .map(([id, ref]) => ({ id, g: generationOf(ref!) }));
    for (const { id, g } of children) {
      if (g !== c.generation) violate('no-stale-children', `${at}: child ${id} of generation ${g} in generation ${c.generation}`);
    }
    // A reset answered in this step leaves none of the nodes it reset (a queued generate may already have spawned new ones).
    for (const r of replies) {
      if (r.step !== step || requests.get(r.to) !== 'reset' || !('result' in r)) continue;
      const left = children.filter(({ g }) => g <= (appliedIn.get(r.to) ?? c.generation));
      if (left.length > 0) violate('no-stale-children', `${at}: reset answered with children ${left.map(({ id, g }) => `${id}@g${g}`).join(',')} still there`);
    }
    // The sweep runs only once the nodes it sweeps for are reaped.
    for (const ref of effects()) {
      if ((ref as { src?: unknown }).src !== 'sweep') continue;
      const input = (ref.getSnapshot() as EffectSnapshot).input as { generation: number; index: number | null };
      const swept = input.index === null ? c.nodes : c.nodes.filter((n) => n.index === input.index);
      if (input.generation !== c.generation || swept.some((n) => !isGoneView(n)))
        violate('sweep-after-reap', `${at}: sweep ${JSON.stringify(input)} runs while nodes are ${c.nodes.map((n) => n.phase).join(',')}`);
      // A kill sweeps for its own node's strays only: index null would sweep every process of the run.
      if (c.current?.type === 'kill' && input.index === null) violate('sweep-after-reap', `${at}: kill ${JSON.stringify(c.current)} sweeps the whole run`);
    }
    // The manager's view of each node is what the node itself holds.
    c.nodes.forEach((view, i) => {
      const ref = c.refs[i] as AnyActorRef | undefined;
      if (!ref || ref.getSnapshot().status === 'stopped') return;
      const node = ref.getSnapshot() as { value: unknown; context: Record<string, unknown> };
      const phase = phaseOf(node.value);
      if (view.phase !== phase) violate('view-matches-node', `${at}: manager sees node ${i} ${view.phase}, node is ${phase}`);
      for (const key of ['pid', 'startedAt', 'connectedAt', 'nodeId', 'exitCode', 'signal', 'outcome', 'tail'] as const)
        if (JSON.stringify((view as Record<string, unknown>)[key]) !== JSON.stringify(node.context[key]))
          violate('view-matches-node', `${at}: manager sees node ${i} ${key}=${JSON.stringify((view as Record<string, unknown>)[key])}, node has ${JSON.stringify(node.context[key])}`);
      const p = run.procs.get(`${view.generation}:${view.index}`);
      if (view.phase === 'killed' && !sameExit(p, view)) violate('exit-kept', `${at}: node ${i} exited ${JSON.stringify(p?.exit)}, manager keeps ${exitText(view)}`);
    });
    // The chart's tallies (what its guards read) agree with its node list.
    const phases = Object.fromEntries(Object.keys(c.phases).map((p) => [p, c.nodes.filter((n) => n.phase === p).length]));
    if (JSON.stringify(phases) !== JSON.stringify(c.phases)) violate('tallies-match-list', `${at}: phases ${JSON.stringify(c.phases)}, node list has ${JSON.stringify(phases)}`);
    const connected = c.nodes.filter((n) => n.connectedAt !== null).length;
    if (c.connected !== connected) violate('tallies-match-list', `${at}: connected ${c.connected}, node list has ${connected}`);
    // Status counts agree with the listed nodes (launching nodes count as spawning, unlisted).
    const status = statusOf(snap);
    const launching = c.nodes.filter((n) => n.phase === 'launching').length;
    for (const [state, count] of Object.entries(status.counts)) {
      const listed = status.nodes.filter((n) => n.state === state).length + (state === 'spawning' ? launching : 0);
      if (count !== listed) violate('status-counts', `${at}: counts.${state}=${count}, node list has ${listed}`);
    }
    for (const n of status.nodes) {
      if (n.state !== 'killed') continue;
      const p = run.procs.get(`${c.generation}:${n.index}`);
      if (!sameExit(p, n)) violate('exit-kept', `${at}: status shows node ${n.index} exit ${exitText(n)}, process exited ${JSON.stringify(p?.exit)}`);
    }
    // A pending wait is for the current generation (a TIMEOUT reply lists the current nodes).
    const stale = c.waiters.filter((w) => w.generation !== c.generation);
    if (stale.length > 0) violate('no-stale-waiters', `${at}: waiters ${stale.map((w) => `${w.to} (generation ${w.generation})`).join(', ')} outlived their generation`);
    // A generate's result names its generation's nodes, all connected if it waited for that;
    // a reset's counts the nodes that were live when it was applied.
    for (const r of replies) {
      if (r.step !== step || !('result' in r)) continue;
      const cmd = sentCmd.get(r.to);
      if (cmd?.type === 'generate') {
        const res = r.result as { generation: number; nodes: { index: number; pid: number }[] };
        if (res.generation !== appliedIn.get(r.to)) violate('replies-truthful', `${at}: ${r.to} answered generation ${res.generation}, applied in ${appliedIn.get(r.to)}`);
        if (res.nodes.length !== cmd.n) violate('replies-truthful', `${at}: ${r.to} for ${cmd.n} nodes answered ${res.nodes.length}`);
        if (res.generation === c.generation) {
          const mine = c.nodes.map((n) => ({ index: n.index, pid: n.pid }));
          if (JSON.stringify(res.nodes) !== JSON.stringify(mine)) violate('replies-truthful', `${at}: ${r.to} answered ${JSON.stringify(res.nodes)}, nodes are ${JSON.stringify(mine)}`);
          const waiting = c.nodes.filter((n) => n.connectedAt === null).map((n) => n.index);
          if (cmd.wait === 'connected' && waiting.length > 0) violate('replies-truthful', `${at}: ${r.to} (wait connected) succeeded with nodes ${waiting.join(',')} not connected`);
        }
      }
      if (cmd?.type === 'reset') {
        const killed = (r.result as { killed: number }).killed;
        if (killed !== liveAtDequeue.get(r.to)) violate('replies-truthful', `${at}: ${r.to} answered killed=${killed}, ${liveAtDequeue.get(r.to)} nodes were live`);
      }
    }
    // A kill's reply carries the exit the process had.
    for (const r of replies) {
      if (r.step !== step || requests.get(r.to) !== 'kill' || !('result' in r)) continue;
      const res = r.result as { pid: number; exitCode: number | null; signal: string | null };
      const p = [...run.procs.values()].find((x) => pidOf(x.generation, x.index) === res.pid);
      if (!sameExit(p, res)) violate('exit-kept', `${at}: kill reply ${JSON.stringify(res)}, process exited ${JSON.stringify(p?.exit)}`);
    }
  }

  for (const c of cmds) {
    step++;
    apply(c);
    check(`step ${step} ${describeCmd(c)}`);
  }

  // The abstract state: what the manager's future depends on (a queued command by kind only).
  const snap = snapshot();
  const c = snap.context;
  const sum = (q: QueuedCommand, full: boolean) => (q.type === 'generate' ? (full ? `g${q.n}${q.wait[0]}` : 'g') : q.type === 'kill' ? (full ? `k${q.index ?? 'pid'}` : 'k') : q.type);
  const nodes = c.nodes.map((view) => `${view.phase}${view.connectedAt !== null ? '+c' : ''}`);
  // While nodes are being reaped, which generate follows does not matter yet.
  const top = topState(snap.value);
  const current = c.current ? sum(c.current, top === 'spawning' || top === 'killing') : null;
  const key = JSON.stringify([snap.value, snap.status, c.queue.map((q) => sum(q, false)), current, nodes, c.waiters.map((w) => w.generation === c.generation), c.generation > 0]);

  // Events the model offers here. While the manager is busy, a queued command is
  // keyed by its kind only, so one of each kind is enough (and behind another
  // queued command, one kind); with the queue full, any command just gets LIMIT.
  // The probes that change nothing are offered when the queue is empty.
  const enabled: Cmd[] = [];
  const queueEmpty = c.queue.length === 0;
  if (top === 'idle') enabled.push(...GENERATES, { type: 'reset' }, { type: 'kill', index: 0 }, { type: 'kill', index: 1 }, { type: 'kill', pid: 'unknown' });
  else if (queueEmpty) enabled.push({ type: 'generate', n: 1, wait: 'connected' }, { type: 'reset' }, { type: 'kill', index: 0 });
  else if (c.queue.length < MAX_QUEUE) enabled.push({ type: 'kill', index: 0 });
  else enabled.push({ type: 'reset' });
  if (queueEmpty) enabled.push({ type: 'connect', from: 'unknown' });
  if (proc(0)?.started) enabled.push({ type: 'connect', from: 0 });
  if (proc(1)?.started) enabled.push({ type: 'connect', from: 1 });
  if (proc(1)?.started && top === 'idle') enabled.push({ type: 'connect', from: 'group-of-1' });
  if (c.waiters.length > 0) enabled.push({ type: 'wait.expired', which: 'oldest' });
  else if (c.generation > 0 && top === 'idle') enabled.push({ type: 'wait.expired', which: 'unknown' });
  if (c.generation > 0 && queueEmpty) enabled.push({ type: 'stale.update' });
  if (effects().length > 0) enabled.push({ type: 'effect', outcome: 'done' }, { type: 'effect', outcome: 'error' });
  c.nodes.forEach((_, i) => {
    const p = proc(i);
    if (!p || p.ended) return;
    if (!p.started) enabled.push({ type: 'process', index: i, what: 'started' }, { type: 'process', index: i, what: 'failed' });
    else enabled.push({ type: 'process', index: i, what: 'exited' });
  });

  if ((typeof opts.drain === 'function' ? opts.drain(key) : opts.drain) && snap.status === 'active') {
    // A fair world: deadlines expire, launches go through, stopped processes exit, effects end.
    for (let round = 0; round < 50; round++) {
      const todo: (() => void)[] = [];
      for (const w of ctx().waiters) todo.push(() => send({ type: 'wait.expired', to: w.to }));
      if (effects().length > 0) todo.push(() => apply({ type: 'effect', outcome: 'done' }));
      ctx().nodes.forEach((_, i) => {
        const p = proc(i);
        if (!p || p.ended) return;
        if (!p.started) todo.push(() => apply({ type: 'process', index: i, what: 'started' }));
        else if (p.stops > 0) todo.push(() => apply({ type: 'process', index: i, what: 'exited' }));
      });
      if (todo.length === 0) break;
      step++;
      todo[0]();
      check(`drain step ${step}`);
    }
    const end = snapshot();
    const rest = `after draining: ${JSON.stringify(end.value)}, queue ${end.context.queue.length}, current ${end.context.current?.to ?? 'none'}, waiters ${end.context.waiters.length}`;
    if (topState(end.value) !== 'idle' || end.context.queue.length > 0 || end.context.current !== null) violate('every-request-answered', `the manager does not come to rest: ${rest}`);
    for (const [to] of requests) if (!replies.some((r) => r.to === to)) violate('every-request-answered', `${to} never answered (${rest})`);
    const accepted = [...requests].filter(([to, kind]) => kind === 'generate' && !refused.has(to)).length;
    if (end.context.generation !== accepted) violate('generation-steps-by-one', `${accepted} generates accepted, generation is ${end.context.generation}`);
  }

  run.teardown = true;
  actor.stop();
  managerRun = null;
  return { key, enabled };
}

// ---------------------------------------------------------------------------
// Traversals (each computed once, shared by the tests below)

const nodeModel = (() => {
  let result: { paths: number; violations: Violations; taken: Set<unknown> } | null = null;
  return () => {
    if (result) return result;
    const violations = new Violations();
    const taken = new Set<unknown>();
    const eventsOf = (steps: { event: NodeEvent }[]) => steps.map((s) => s.event).filter((e) => !e.type.startsWith('xstate.'));
    const simple = getSimplePaths(nodeForTraversal, { input: NODE_INPUT, events: NODE_EVENTS, limit: 10_000 });
    for (const p of simple) replayNodePath(eventsOf(p.steps), violations, taken);
    // Simple paths never take a self-loop (a targetless transition that changes nothing):
    // also replay every edge, as the shortest path to its state plus the event.
    const shortest = getShortestPaths(nodeForTraversal, { input: NODE_INPUT, events: NODE_EVENTS, limit: 10_000 });
    for (const p of shortest) for (const e of NODE_EVENTS) replayNodePath([...eventsOf(p.steps), e], violations, taken);
    result = { paths: simple.length, violations, taken };
    return result;
  };
})();

interface World {
  cmds: Cmd[];
  outcome: Outcome;
}

const managerModel = (() => {
  let result: { states: number; paths: { cmds: Cmd[]; key: string }[]; replays: number; violations: Violations; taken: Set<unknown>; ms: number } | null = null;
  return () => {
    if (result) return result;
    const violations = new Violations();
    const taken = new Set<unknown>();
    let replays = 0;
    const t0 = Date.now();
    const drained = new Set<string>();
    const step = (cmds: Cmd[]): World => {
      replays++;
      // The prefix is the parent's own path, checked when it was reached: check the last step.
      // Drain from each abstract state once (a request dropped on the way is caught at its
      // step by one-command-in-flight; whether the rest is answered depends on the state).
      const drain = (key: string) => !drained.has(key) && !!drained.add(key);
      return { cmds, outcome: runManager(cmds, violations, taken, { drain, checkFrom: cmds.length }) };
    };
    const world = fromTransition<World, Cmd, never, undefined>((w, cmd) => step([...w.cmds, cmd]), () => step([]));
    const paths = getShortestPaths(world, {
      events: (snap) => snap.context.outcome.enabled,
      serializeState: (snap) => snap.context.outcome.key,
      limit: 200_000,
    });
    // The path's own events (its `state` may have been reached again by a longer history).
    const cmdsOf = (p: (typeof paths)[number]) => p.steps.map((s) => s.event).filter((e) => !(e.type as string).startsWith('xstate.'));
    result = { states: paths.length, paths: paths.map((p) => ({ cmds: cmdsOf(p), key: p.state.context.outcome.key })), replays, violations, taken, ms: Date.now() - t0 };
    return result;
  };
})();

function coverage(catalogue: Map<unknown, string>, taken: Set<unknown>) {
  const missed = [...catalogue].filter(([t]) => !taken.has(t)).map(([, label]) => label);
  return { total: catalogue.size, covered: catalogue.size - missed.length, missed };
}

/**
 * Transitions a chart defines but no input can take, each with the reason. An entry
 * whose transition is gone from the chart is ignored; one that is taken after all
 * fails the coverage test (the list must stay true).
 */
const UNREACHABLE: Record<string, string> = {
  '#manager.rollingBack.stopping always [and(allGone, noNodes)] -> #manager.rollingBack.swept':
    'stopThenSweep() is shared with resetting and killing; a rollback always has at least the node that failed, so "no nodes" never holds there',
};

function expectCovered(catalogue: Map<unknown, string>, taken: Set<unknown>) {
  const { missed } = coverage(catalogue, taken);
  const takenAnyway = [...catalogue].filter(([t, label]) => label in UNREACHABLE && taken.has(t)).map(([, label]) => label);
  expect(missed.filter((label) => !(label in UNREACHABLE))).toEqual([]);
  expect(takenAnyway).toEqual([]);
}

const nodeViolations = () => nodeModel().violations;
const managerViolations = () => managerModel().violations;

// ---------------------------------------------------------------------------

describe('node machine, model-based', () => {
  test('the traversal yields simple paths', () => {
    expect(nodeModel().paths).toBeGreaterThan(10);
  });

  test.each(NODE_INVARIANTS)('invariant on every path and edge: %s', (invariant) => {
    expect(nodeViolations().of(invariant)).toEqual([]);
  });

  test('every transition the chart defines is taken', () => {
    expect(nodeCatalogue.size).toBeGreaterThan(0);
    expectCovered(nodeCatalogue, nodeModel().taken);
  });
});

describe('manager machine, model-based', () => {
  test('the traversal terminates with a bounded abstract state space', () => {
    const { states, replays, ms } = managerModel();
    if (process.env.MODEL_STATS) {
      const m = coverage(managerCatalogue, managerModel().taken);
      const n = coverage(nodeCatalogue, nodeModel().taken);
      const nm = coverage(nodeInManagerCatalogue, managerModel().taken);
      console.log(
        `manager model: ${states} abstract states, ${replays} checked replays, ${ms} ms\n` +
          `transition coverage: manager ${m.covered}/${m.total}, node (node model) ${n.covered}/${n.total}, node (inside the manager) ${nm.covered}/${nm.total}\n` +
          `missed: ${JSON.stringify([...m.missed, ...n.missed])}`,
      );
    }
    expect(states).toBeGreaterThan(50);
  });

  test.each(MANAGER_INVARIANTS)('invariant on every edge of the model: %s', (invariant) => {
    expect(managerViolations().of(invariant)).toEqual([]);
  });

  test('each shortest path replays on a fresh actor to the state the traversal recorded, all steps checked', () => {
    const violations = new Violations();
    const { paths } = managerModel();
    const mismatched = paths.filter((p) => runManager(p.cmds, violations, new Set(), { drain: false, checkFrom: 0 }).key !== p.key).map((p) => describePath(p.cmds));
    expect(mismatched).toEqual([]);
    expect([...violations.byInvariant.values()].flat()).toEqual([]);
  });

  test('every transition the manager chart defines is taken', () => {
    expect(managerCatalogue.size).toBeGreaterThan(0);
    expectCovered(managerCatalogue, managerModel().taken);
  });

  test('every node transition is also taken inside the manager, with the launcher-like process', () => {
    expectCovered(nodeInManagerCatalogue, managerModel().taken);
  });
});

// ---------------------------------------------------------------------------
// Regressions: explicit paths, named after the failure they guard. Paths already
// scripted in test/machines.test.ts are not repeated here.

/** A manager with launcher-like stub processes and stub effect actors, driven by hand. */
function liveManager(maxQueue = 10) {
  const problems: string[] = [];
  const run: ManagerRun = { procs: new Map(), teardown: false, violate: (invariant, message) => problems.push(`${invariant}: ${message}`) };
  managerRun = run;
  const actor = createActor(managerForReplay, { input: { maxQueue } });
  const replies: Reply[] = [];
  const published: unknown[] = [];
  actor.on('reply', (r) => replies.push(r));
  actor.on('publish', (p) => published.push(p.event));
  actor.subscribe({ error: (err) => problems.push(`manager errored: ${String(err)}`) });
  actor.start();
  const proc = (g: number, i: number) => {
    const p = run.procs.get(`${g}:${i}`);
    if (!p) throw new Error(`no process ${g}:${i}`);
    return p;
  };
  const effects = () =>
    Object.entries(actor.getSnapshot().children as Record<string, AnyActorRef | undefined>)
      .filter(([id, ref]) => ref && !NODE_CHILD_ID.test(id) && ref.getSnapshot().status === 'active')
      .map(([, ref]) => ref!);
  return {
    actor,
    problems,
    published,
    repliesTo: (to: string) => replies.filter((r) => r.to === to),
    state: () => topState(actor.getSnapshot().value),
    nodes: () => actor.getSnapshot().context.nodes,
    nodeChildren: () => Object.keys(actor.getSnapshot().children).filter((id) => NODE_CHILD_ID.test(id)),
    generate: (to: string, n: number, wait: 'spawned' | 'connected' = 'spawned') =>
      actor.send({ type: 'generate', to, n, wait, interface: '127.0.0.1:7071', machineIp: '127.0.0.1' }),
    start: (g: number, i: number) => {
      const p = proc(g, i);
      p.started = true;
      p.send({ type: 'process.started', pid: pidOf(g, i), at: 100 + i });
    },
    exit: (g: number, i: number, exitCode: number | null, signal: string | null) => {
      const p = proc(g, i);
      p.ended = true;
      p.exit = { exitCode, signal, outcome: p.stops > 0 ? 'terminated' : 'exited' };
      p.send(exitEvent(exitCode, signal));
    },
    proc,
    /** The inputs of the effect actors (sweeps) running now. */
    effectInputs: () => effects().map((ref) => (ref.getSnapshot() as EffectSnapshot).input),
    /** Ends the running effects (bounded: a chart that keeps re-invoking fails the test rather than hanging it). */
    finishEffects: (how: 'done' | 'error' = 'done') => {
      for (let round = 0; round < 5; round++) effects()[0]?.send(how === 'done' ? { type: 'effect.done', output: 0 } : { type: 'effect.error' });
      if (effects().length > 0) problems.push('an effect actor is still running after ending it 5 times');
    },
  };
}

describe('regressions', () => {
  afterEach(() => {
    managerRun = null;
  });

  test('late node.update from an old generation is ignored', () => {
    const m = liveManager();
    m.generate('a', 1);
    m.start(1, 0);
    m.generate('b', 1);
    m.exit(1, 0, null, 'SIGTERM');
    m.finishEffects();
    m.start(2, 0);
    const before = { nodes: m.nodes(), published: m.published.length };
    // A view of generation 1's node 0 arriving after generation 2 started.
    m.actor.send({ type: 'node.update', view: { ...before.nodes[0], generation: 1, phase: 'killed', pid: pidOf(1, 0), exitCode: null, signal: 'SIGTERM' } });
    expect(m.nodes()).toBe(before.nodes);
    expect(m.published).toHaveLength(before.published);
    expect(m.nodes()[0]).toMatchObject({ generation: 2, phase: 'spawning', pid: pidOf(2, 0) });
    expect(m.problems).toEqual([]);
  });

  test('reset while a wait="connected" generate is pending answers the wait once (NODE_EXITED), not never', () => {
    const m = liveManager();
    m.generate('g', 2, 'connected');
    m.start(1, 0);
    m.start(1, 1);
    m.actor.send({ type: 'connect', to: 'c0', pid: pidOf(1, 0), pgid: pidOf(1, 0), at: 5 });
    expect(m.repliesTo('g')).toEqual([]);
    m.actor.send({ type: 'reset', to: 'r' });
    m.exit(1, 0, null, 'SIGTERM');
    m.exit(1, 1, null, 'SIGTERM');
    m.finishEffects();
    expect(m.repliesTo('g')).toEqual([expect.objectContaining({ error: expect.objectContaining({ code: 'NODE_EXITED' }) })]);
    expect(m.repliesTo('r')).toEqual([expect.objectContaining({ result: expect.objectContaining({ killed: 2 }) })]);
    // The supervisor's deadline may still fire: no second reply.
    m.actor.send({ type: 'wait.expired', to: 'g' });
    expect(m.repliesTo('g')).toHaveLength(1);
    expect(m.actor.getSnapshot().context.waiters).toEqual([]);
    expect(m.problems).toEqual([]);
  });

  test('kill queued behind a generate is not applied to launching nodes; it waits and then stops the new node', () => {
    const m = liveManager();
    m.generate('g', 2);
    m.actor.send({ type: 'kill', to: 'k', index: 0 });
    expect(m.state()).toBe('spawning');
    expect(m.proc(1, 0).stops).toBe(0); // not withdrawn while launching
    m.start(1, 0);
    m.start(1, 1);
    expect(m.repliesTo('g')).toHaveLength(1);
    expect(m.state()).toBe('killing');
    expect(m.proc(1, 0).stops).toBe(1);
    expect(m.proc(1, 1).stops).toBe(0);
    m.exit(1, 0, null, 'SIGTERM');
    m.finishEffects();
    expect(m.repliesTo('k')).toEqual([expect.objectContaining({ result: expect.objectContaining({ pid: pidOf(1, 0), exitCode: null, signal: 'SIGTERM' }) })]);
    expect(m.state()).toBe('idle');
    expect(m.problems).toEqual([]);
  });

  test('a reset whose sweep fails is still answered, and the old nodes are dropped', () => {
    const m = liveManager();
    m.generate('g', 1);
    m.start(1, 0);
    m.actor.send({ type: 'reset', to: 'r' });
    m.exit(1, 0, null, 'SIGTERM');
    expect(m.repliesTo('r')).toEqual([]);
    m.finishEffects('error');
    expect(m.repliesTo('r')).toEqual([expect.objectContaining({ result: expect.objectContaining({ killed: 1 }) })]);
    expect(m.state()).toBe('idle');
    expect(m.nodeChildren()).toEqual([]);
    expect(m.proc(1, 0).disposed).toBe(true);
    expect(m.problems).toEqual([]);
  });

  test('a spawn failure with the other node still launching withdraws it and answers once, nothing left running', () => {
    const m = liveManager();
    m.generate('g', 2, 'connected');
    const p1 = m.proc(1, 1);
    m.proc(1, 0).ended = true;
    m.proc(1, 0).send({ type: 'process.failed', code: 'EAGAIN', message: 'spawn x EAGAIN' });
    // The launching node was asked to stop and the launcher withdrew it (ECANCELED) at once.
    expect(p1.stops).toBe(1);
    expect(p1.started).toBe(false);
    m.finishEffects();
    expect(m.repliesTo('g')).toEqual([expect.objectContaining({ error: expect.objectContaining({ code: 'SPAWN_FAILED', details: [{ index: 0, code: 'EAGAIN' }] }) })]);
    expect(m.state()).toBe('idle');
    expect(m.actor.getSnapshot().context.waiters).toEqual([]);
    expect(m.problems).toEqual([]);
  });

  test('kill of an unknown node does not sweep the whole run', () => {
    const m = liveManager();
    m.generate('g', 2);
    m.start(1, 0);
    m.start(1, 1);
    m.actor.send({ type: 'kill', to: 'k', index: 9 });
    // Before the fix: killing.sweeping with { generation: 1, index: null }, i.e. every process of the run.
    expect(m.effectInputs().filter((input) => (input as { index: unknown }).index === null)).toEqual([]);
    m.finishEffects();
    expect(m.repliesTo('k')).toEqual([expect.objectContaining({ error: expect.objectContaining({ code: 'UNKNOWN_NODE' }) })]);
  });

  test("a repeated connect's new nodeId reaches status", () => {
    const m = liveManager();
    m.generate('g', 1);
    m.start(1, 0);
    m.actor.send({ type: 'connect', to: 'c1', pid: pidOf(1, 0), pgid: pidOf(1, 0), at: 5, nodeId: 'first' });
    m.actor.send({ type: 'connect', to: 'c2', pid: pidOf(1, 0), pgid: pidOf(1, 0), at: 6, nodeId: 'second' });
    expect(m.repliesTo('c2')).toEqual([expect.objectContaining({ result: { index: 0, generation: 1 } })]);
    expect(statusOf(m.actor.getSnapshot()).nodes[0].nodeId).toBe('second');
  });
});
