// The statechart of one node: a protocol process the manager started.
//
//   spawning.launching --process.started--> spawning.started --connect--> running
//   any live state --process.exited--> killed        (exit observed, never merely signalled)
//   spawning.started / running --stop--> stopping --process.exited--> killed
//   spawning.launching --process.failed--> failed    (the OS refused to start it)
//
// How a node ended is kept as its outcome: `exited` (on its own, before any stop),
// `terminated` (after the stop's SIGTERM) or `killed` (SIGKILL after the grace period).
//
// The process itself is the invoked actor `process`, supplied from src/ (see
// src/launcher.ts). This chart only decides; it performs no I/O and keeps no timers.

import { assertEvent, assign, fromCallback, sendParent, sendTo, setup } from 'xstate';
import type { NodePhase, StopOutcome } from '../src/protocol';

/** What the manager passes to each node it spawns. */
export interface NodeInput {
  index: number;
  generation: number;
  /** `host:port` of the controller, the node's first extra argument. */
  interface: string;
  /** Address the manager is bound to, the node's second extra argument. */
  machineIp: string;
}

/** Events the process actor sends back to its node. */
export type ProcessEvent =
  | { type: 'process.started'; pid: number; at: number }
  | { type: 'process.failed'; code: string; message: string }
  | {
      type: 'process.exited';
      exitCode: number | null;
      signal: string | null;
      /** The grace period ran out and the group was sent SIGKILL. */
      escalated: boolean;
      /** Descendants outside the node's process group that the cgroup layer killed. */
      escaped: number;
      /** The last lines of its output, when it exited on its own and they could be read. */
      tail?: string[];
    };



/** Events the manager sends to a node. */
export type NodeCommand = { type: 'connect'; at: number; nodeId?: unknown } | { type: 'stop' };

export type NodeEvent = ProcessEvent | NodeCommand;

/** What a node tells its parent. */
export interface NodeUpdate { type: 'node.update'; view: NodeView }

/** Event the node sends to its process actor to have it terminated. */
export interface ProcessStop { type: 'stop' }

/** The node's own memory; the phase is its state. */
export interface NodeContext {
  input: NodeInput;
  pid: number | null;
  startedAt: number | null;
  connectedAt: number | null;
  nodeId?: unknown;
  exitCode: number | null;
  signal: string | null;
  outcome: StopOutcome | null;
  escaped: number;
  /** Why the OS would not start it (phase `failed`): an errno name and message. */
  failure: { code: string; message: string } | null;
  /** The last lines of its output, as the process actor read them when it exited on its own. */
  tail: string[] | null;
}

/** The manager's view of one node; sent to the parent on every change. */
export type NodeView = Omit<NodeContext, 'input'> & { index: number; generation: number; phase: NodePhase };

function viewOf(context: NodeContext, phase: NodePhase): NodeView {
  const { input, ...rest } = context;
  return { index: input.index, generation: input.generation, phase, ...rest };
}

export const nodeMachine = setup({
  types: {
    context: {} as NodeContext,
    input: {} as NodeInput,
    events: {} as NodeEvent,
  },
  actors: {
    // Placeholder: src/launcher.ts provides the real process.
    process: fromCallback<ProcessStop, NodeInput>(() => undefined),
  },
  actions: {
    report: sendParent(({ context }, phase: NodePhase): NodeUpdate => ({ type: 'node.update', view: viewOf(context, phase) })),
    stopProcess: sendTo('process', { type: 'stop' }),
    recordExit: assign(({ event }, stopped: boolean) => {
      assertEvent(event, 'process.exited');
      const outcome: StopOutcome = !stopped ? 'exited' : event.escalated ? 'killed' : 'terminated';
      return { exitCode: event.exitCode, signal: event.signal, outcome, escaped: event.escaped, tail: event.tail ?? null };
    }),
  },
}).createMachine({
  id: 'node',
  context: ({ input }) => ({
    input,
    pid: null,
    startedAt: null,
    connectedAt: null,
    exitCode: null,
    signal: null,
    outcome: null,
    escaped: 0,
    failure: null,
    tail: null,
  }),
  invoke: { id: 'process', src: 'process', input: ({ context }) => context.input },
  initial: 'spawning',
  states: {
    spawning: {
      initial: 'launching',
      on: { 'process.exited': { target: 'killed', actions: { type: 'recordExit', params: false } } },
      states: {
        launching: {
          on: {
            'process.started': {
              target: 'started',
              actions: assign(({ event }) => ({ pid: event.pid, startedAt: event.at })),
            },
            'process.failed': {
              target: '#node.failed',
              actions: assign(({ event }) => ({ failure: { code: event.code, message: event.message } })),
            },
            // Not yet started: the process actor cancels the launch and answers process.failed.
            stop: { actions: 'stopProcess' },
          },
        },
        started: {
          entry: { type: 'report', params: 'spawning' },
          on: {
            connect: {
              target: '#node.running',
              actions: assign(({ event }) => ({ connectedAt: event.at, nodeId: event.nodeId })),
            },
            stop: '#node.stopping',
          },
        },
      },
    },
    running: {
      entry: { type: 'report', params: 'running' },
      on: {
        'process.exited': { target: 'killed', actions: { type: 'recordExit', params: false } },
        // A repeated connect refreshes the node's self-chosen id (reported, so status shows it).
        connect: { actions: [assign(({ event }) => ({ nodeId: event.nodeId })), { type: 'report', params: 'running' }] },
        stop: 'stopping',
      },
    },
    // Not reported: the manager, which sent the stop, records it itself (once per
    // reset, not once per node).
    stopping: {
      entry: 'stopProcess',
      on: { 'process.exited': { target: 'killed', actions: { type: 'recordExit', params: true } } },
    },
    killed: { type: 'final', entry: { type: 'report', params: 'killed' } },
    failed: { type: 'final', entry: { type: 'report', params: 'failed' } },
  },
});
