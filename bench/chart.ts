// The node chart's own share of a reset, for `npm run bench`: N node actors
// (machines/node.ts) in this process with their effects stubbed, each sent `stop` and
// then `process.exited`. This is the least an actor per node adds to a reset,
// whatever the manager does around it. The same two events through an XState machine
// of three states and nothing else show how much of that is XState's own.

import { AnyActorRef, createActor, createMachine, fromCallback } from 'xstate';
import { nodeMachine, NodeInput, ProcessStop } from '../machines/node';
import { round } from './common';

/** One measured round: µs per node for the stops, then for the exits. */
export interface ChartRound { stopUs: number; exitUs: number }

const stubbed = nodeMachine.provide({
  actors: { process: fromCallback<ProcessStop, NodeInput>(() => undefined) },
  actions: { report: () => undefined, stopProcess: () => undefined },
});

const bare = createMachine({
  initial: 'running',
  states: { running: { on: { stop: 'stopping' } }, stopping: { on: { 'process.exited': 'killed' } }, killed: { type: 'final' } },
});

function startedNode(index: number): AnyActorRef {
  const actor = createActor(stubbed, { input: { index, generation: 1, interface: '127.0.0.1:7071', machineIp: '127.0.0.1' } }).start();
  actor.send({ type: 'process.started', pid: 100_000 + index, at: 0 });
  return actor;
}

/** `rounds` measured rounds of `n` actors, after `warmup` rounds that let V8 optimize the code. */
function cost(start: (index: number) => AnyActorRef, n: number, rounds: number, warmup: number): ChartRound[] {
  const samples: ChartRound[] = [];
  for (let r = 0; r < warmup + rounds; r++) {
    const actors = Array.from({ length: n }, (_, index) => start(index));
    let t0 = performance.now();
    for (const a of actors) a.send({ type: 'stop' });
    const stopUs = ((performance.now() - t0) * 1000) / n;
    t0 = performance.now();
    for (const a of actors) a.send({ type: 'process.exited', exitCode: null, signal: 'SIGTERM', escalated: false, escaped: 0 });
    const exitUs = ((performance.now() - t0) * 1000) / n;
    if (actors.some((a) => a.getSnapshot().value !== 'killed')) throw new Error('an actor did not reach killed');
    if (r >= warmup) samples.push({ stopUs: round(stopUs, 2), exitUs: round(exitUs, 2) });
  }
  return samples;
}

/** The node chart's rounds, and the same for a bare three-state machine. */
export function nodeChartCost(n: number, rounds = 7, warmup = 3): { node: ChartRound[]; bare: ChartRound[] } {
  return { node: cost(startedNode, n, rounds, warmup), bare: cost(() => createActor(bare).start(), n, rounds, warmup) };
}
