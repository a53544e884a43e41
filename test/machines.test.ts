// Transition scripts for the two statecharts: plain events in, states, context,
// replies and published events out. No processes, sockets or timers: the node's
// `process` actor is a stand-in the test drives by hand.

import { createActor, createMachine, fromCallback, PromiseActorLogic } from 'xstate';
import { ManagerEmitted, managerMachine, statusOf, SweepInput } from '../machines/manager';
import { NodeInput, nodeMachine, NodeView, ProcessEvent, ProcessStop } from '../machines/node';

/** Stand-in processes, by "generation:index": the test plays the OS. */
function fakeProcesses() {
  const procs = new Map<string, { send: (e: ProcessEvent) => void; stops: number; disposed: boolean }>();
  const logic = fromCallback<ProcessStop, NodeInput>(({ input, sendBack, receive }) => {
    const p = { send: sendBack, stops: 0, disposed: false };
    procs.set(`${input.generation}:${input.index}`, p);
    receive(() => p.stops++);
    return () => (p.disposed = true);
  });
  const get = (generation: number, index: number) => {
    const p = procs.get(`${generation}:${index}`);
    if (!p) throw new Error(`no process ${generation}:${index}`);
    return p;
  };
  return {
    logic,
    get,
    start: (g: number, i: number, pid: number) => get(g, i).send({ type: 'process.started', pid, at: 1000 + pid }),
    exit: (g: number, i: number, exitCode: number | null, signal: string | null, escalated = false, tail?: string[]) =>
      get(g, i).send({ type: 'process.exited', exitCode, signal, escalated, escaped: 0, tail }),
    fail: (g: number, i: number, code: string) => get(g, i).send({ type: 'process.failed', code, message: `spawn x ${code}` }),
  };
}

describe('node machine', () => {
  const input: NodeInput = { index: 3, generation: 7, interface: '10.0.0.1:7071', machineIp: '10.0.0.2' };

  function startNode() {
    const procs = fakeProcesses();
    const reports: NodeView[] = [];
    const node = createActor(
      nodeMachine.provide({
        actors: { process: procs.logic },
        actions: { report: ({ context }, phase) => reports.push({ ...context.input, ...context, phase } as unknown as NodeView) },
      }),
      { input },
    ).start();
    return { node, procs, reports, proc: () => procs.get(7, 3) };
  }

  test('launching -> spawning -> running -> stopping -> killed keeps exit code and signal', () => {
    const { node, proc, reports } = startNode();
    expect(node.getSnapshot().value).toEqual({ spawning: 'launching' });
    proc().send({ type: 'process.started', pid: 4242, at: 5 });
    expect(node.getSnapshot().value).toEqual({ spawning: 'started' });
    expect(node.getSnapshot().context).toMatchObject({ pid: 4242, startedAt: 5 });
    node.send({ type: 'connect', at: 9, nodeId: 'alpha' });
    expect(node.getSnapshot().value).toBe('running');
    expect(node.getSnapshot().context).toMatchObject({ connectedAt: 9, nodeId: 'alpha' });
    node.send({ type: 'stop' });
    expect(node.getSnapshot().value).toBe('stopping');
    expect(proc().stops).toBe(1);
    // A signal sent is not an exit observed: still stopping.
    expect(node.getSnapshot().status).toBe('active');
    proc().send({ type: 'process.exited', exitCode: null, signal: 'SIGTERM', escalated: false, escaped: 0 });
    expect(node.getSnapshot().value).toBe('killed');
    expect(node.getSnapshot().status).toBe('done');
    expect(node.getSnapshot().context).toMatchObject({ exitCode: null, signal: 'SIGTERM', outcome: 'terminated' });
    // Stopping is not reported: the manager, which sent the stop, records it.
    expect(reports.map((r) => r.phase)).toEqual(['spawning', 'running', 'killed']);
    // Final state: the process actor was stopped (its cleanup ran).
    expect(proc().disposed).toBe(true);
  });

  test('exit while spawning goes straight to killed', () => {
    const { node, proc } = startNode();
    proc().send({ type: 'process.started', pid: 1, at: 1 });
    proc().send({ type: 'process.exited', exitCode: 3, signal: null, escalated: false, escaped: 0 });
    expect(node.getSnapshot().value).toBe('killed');
    expect(node.getSnapshot().context.exitCode).toBe(3);
    expect(node.getSnapshot().context.outcome).toBe('exited');
    expect(node.getSnapshot().context.connectedAt).toBeNull();
  });

  test('stop while still launching asks the process to cancel; the failure ends the node', () => {
    const { node, proc, reports } = startNode();
    node.send({ type: 'stop' });
    expect(proc().stops).toBe(1);
    expect(node.getSnapshot().value).toEqual({ spawning: 'launching' });
    proc().send({ type: 'process.failed', code: 'ECANCELED', message: 'cancelled' });
    expect(node.getSnapshot().value).toBe('failed');
    expect(node.getSnapshot().context.failure).toEqual({ code: 'ECANCELED', message: 'cancelled' });
    expect(reports.map((r) => r.phase)).toEqual(['failed']);
  });

  test('connect before the pid is known is ignored; a repeated connect only refreshes nodeId', () => {
    const { node, proc } = startNode();
    node.send({ type: 'connect', at: 1 });
    expect(node.getSnapshot().value).toEqual({ spawning: 'launching' });
    proc().send({ type: 'process.started', pid: 8, at: 2 });
    node.send({ type: 'connect', at: 3, nodeId: 1 });
    node.send({ type: 'connect', at: 4, nodeId: 2 });
    expect(node.getSnapshot().context).toMatchObject({ connectedAt: 3, nodeId: 2 });
  });
});

describe('manager machine', () => {
  function startManager(maxQueue = 100) {
    const procs = fakeProcesses();
    // The /proc sweep, played synchronously: records what it was asked, reports `strays` killed.
    const sweeps: SweepInput[] = [];
    let strays = 0;
    const sweep = createMachine({
      types: {} as { input: SweepInput; output: number },
      context: ({ input }) => (sweeps.push(input), {}),
      initial: 'done',
      states: { done: { type: 'final' } },
      output: () => strays,
    });
    // A machine stands in for the production promise actor: same input and output, but synchronous.
    const machine = managerMachine.provide({
      actors: { node: nodeMachine.provide({ actors: { process: procs.logic } }), sweep: sweep as unknown as PromiseActorLogic<number, SweepInput> },
    });
    const actor = createActor(machine, { input: { maxQueue } });
    const replies: Extract<ManagerEmitted, { type: 'reply' }>[] = [];
    const published: unknown[] = [];
    actor.on('reply', (r) => replies.push(r));
    actor.on('publish', (p) => published.push(p.event));
    actor.start();
    const replyTo = (to: string) => replies.find((r) => r.to === to);
    // The top-level state, as status reports it ("resetting", not { resetting: "stopping" }).
    const state = () => statusOf(actor.getSnapshot()).state;
    const status = () => statusOf(actor.getSnapshot());
    const generate = (to: string, n: number, wait: 'spawned' | 'connected' = 'spawned') =>
      actor.send({ type: 'generate', to, n, wait, interface: '127.0.0.1:7071', machineIp: '127.0.0.1' });
    return { actor, procs, replies, published, replyTo, state, status, generate, sweeps, setStrays: (n: number) => (strays = n) };
  }

  test('generate spawns n node actors and replies once every process has started', () => {
    const m = startManager();
    m.generate('a', 2);
    expect(m.state()).toBe('spawning');
    expect(m.status()).toMatchObject({ generation: 1, target: 2, counts: { spawning: 2, running: 0, killed: 0 }, nodes: [] });
    m.procs.start(1, 0, 100);
    expect(m.replyTo('a')).toBeUndefined();
    m.procs.start(1, 1, 101);
    expect(m.replyTo('a')).toEqual({ type: 'reply', to: 'a', result: { generation: 1, nodes: [{ index: 0, pid: 100 }, { index: 1, pid: 101 }] } });
    expect(m.state()).toBe('idle');
    // Nothing to sweep up after when there were no nodes before.
    expect(m.sweeps).toEqual([]);
    expect(m.published).toEqual([
      { event: 'node', generation: 1, index: 0, pid: 100, state: 'spawning' },
      { event: 'node', generation: 1, index: 1, pid: 101, state: 'spawning' },
    ]);
  });

  test('a reset drops every node actor of the generation at once: none is left among the children, each is stopped', () => {
    const m = startManager();
    const n = 300;
    m.generate('g', n);
    for (let i = 0; i < n; i++) m.procs.start(1, i, 100 + i);
    const nodeRefs = Object.values(m.actor.getSnapshot().children);
    expect(nodeRefs).toHaveLength(n);
    m.actor.send({ type: 'reset', to: 'r' });
    for (let i = 0; i < n; i++) m.procs.exit(1, i, null, 'SIGTERM');
    expect(m.replyTo('r')).toMatchObject({ result: { killed: n } });
    expect(m.actor.getSnapshot().children).toEqual({});
    for (const ref of nodeRefs) expect(ref!.getSnapshot().status).toBe('done');
    for (let i = 0; i < n; i++) expect(m.procs.get(1, i).disposed).toBe(true);
    // The next generation's actors take the same ids.
    m.generate('g2', 2);
    expect(Object.keys(m.actor.getSnapshot().children).sort()).toEqual(['n0', 'n1']);
  });

  test('connect by pid or by a pid in the node\'s process group; unknown pids are refused', () => {
    const m = startManager();
    m.generate('g', 2);
    m.procs.start(1, 0, 100);
    m.procs.start(1, 1, 101);
    m.actor.send({ type: 'connect', to: 'c1', pid: 100, pgid: 100, at: 5 });
    m.actor.send({ type: 'connect', to: 'c2', pid: 555, pgid: 101, at: 6, nodeId: 'wrapper-child' });
    m.actor.send({ type: 'connect', to: 'c3', pid: 999, pgid: 999, at: 7 });
    expect(m.replyTo('c1')).toMatchObject({ result: { index: 0, generation: 1 } });
    expect(m.replyTo('c2')).toMatchObject({ result: { index: 1, generation: 1 } });
    expect(m.replyTo('c3')).toMatchObject({ error: { code: 'UNKNOWN_NODE' } });
    expect(m.status().counts).toEqual({ spawning: 0, running: 2, killed: 0 });
    expect(m.status().nodes[1]).toMatchObject({ state: 'running', nodeId: 'wrapper-child', connectedAt: 6 });
    expect(m.published).toContainEqual({ event: 'ready', generation: 1, n: 2 });
  });

  test('wait "connected" replies when all have connected', () => {
    const m = startManager();
    m.generate('g', 2, 'connected');
    m.procs.start(1, 0, 100);
    m.procs.start(1, 1, 101);
    expect(m.replyTo('g')).toBeUndefined();
    m.actor.send({ type: 'connect', to: 'c0', pid: 100, pgid: 100, at: 1 });
    expect(m.replyTo('g')).toBeUndefined();
    m.actor.send({ type: 'connect', to: 'c1', pid: 101, pgid: 101, at: 2 });
    expect(m.replyTo('g')).toMatchObject({ result: { generation: 1, nodes: [{ index: 0, pid: 100 }, { index: 1, pid: 101 }] } });
  });

  test('a node exiting before it connected fails the wait with NODE_EXITED; the others keep running', () => {
    const m = startManager();
    m.generate('g', 2, 'connected');
    m.procs.start(1, 0, 100);
    m.procs.start(1, 1, 101);
    m.procs.exit(1, 1, 1, null);
    expect(m.replyTo('g')).toMatchObject({ error: { code: 'NODE_EXITED', details: [{ index: 1, pid: 101, exitCode: 1, signal: null }] } });
    expect(m.procs.get(1, 0).stops).toBe(0);
    expect(m.status().counts).toEqual({ spawning: 1, running: 0, killed: 1 });
  });

  test('the last lines of a node that exited on its own are kept and shown for killed nodes; NODE_EXITED quotes the last one', () => {
    const m = startManager();
    m.generate('g', 3, 'connected');
    m.procs.start(1, 0, 100);
    m.procs.start(1, 1, 101);
    m.procs.start(1, 2, 102);
    m.procs.exit(1, 1, 2, null, false, ['loading config', 'error: no such file']);
    expect(m.replyTo('g')).toMatchObject({ error: { code: 'NODE_EXITED', message: expect.stringContaining('its last output line: "error: no such file"; herd logs 1 shows its output') } });
    // An exit without them (a stopped node, or a file that could not be read) has none.
    m.procs.exit(1, 2, 0, null);
    const nodes = m.status().nodes;
    expect(nodes[1]).toMatchObject({ state: 'killed', exitCode: 2, tail: ['loading config', 'error: no such file'] });
    expect(nodes[0].tail).toBeUndefined();
    expect(nodes[2].tail).toBeUndefined();
    expect(m.actor.getSnapshot().context.nodes[1].tail).toEqual(['loading config', 'error: no such file']);
  });

  test('a node that exits while others are still starting fails the wait as soon as the spawn completes', () => {
    const m = startManager();
    m.generate('g', 2, 'connected');
    m.procs.start(1, 0, 100);
    m.procs.exit(1, 0, 0, null);
    m.procs.start(1, 1, 101);
    expect(m.replyTo('g')).toMatchObject({ error: { code: 'NODE_EXITED' } });
  });

  test('wait.expired answers TIMEOUT and leaves the nodes alone; a late expiry is ignored', () => {
    const m = startManager();
    m.generate('g', 2, 'connected');
    m.procs.start(1, 0, 100);
    m.procs.start(1, 1, 101);
    m.actor.send({ type: 'connect', to: 'c0', pid: 100, pgid: 100, at: 1 });
    m.actor.send({ type: 'wait.expired', to: 'g' });
    expect(m.replyTo('g')).toMatchObject({ error: { code: 'TIMEOUT', details: { notConnected: [1] } } });
    m.actor.send({ type: 'wait.expired', to: 'g' });
    expect(m.replies.filter((r) => r.to === 'g')).toHaveLength(1);
    expect(m.procs.get(1, 1).stops).toBe(0);
  });

  test('generate while a generate is running: queued, applied after, with the old nodes reaped first', () => {
    const m = startManager();
    m.generate('first', 1);
    m.generate('second', 1);
    expect(m.actor.getSnapshot().context.queue).toHaveLength(1);
    m.procs.start(1, 0, 100);
    expect(m.replyTo('first')).toMatchObject({ result: { generation: 1 } });
    // The second generate now resets: the gen-1 node is asked to stop and not yet replaced.
    expect(m.state()).toBe('resetting');
    expect(m.procs.get(1, 0).stops).toBe(1);
    expect(() => m.procs.get(2, 0)).toThrow();
    // Still alive until its exit is observed.
    expect(m.status().nodes[0]).toMatchObject({ pid: 100, state: 'spawning' });
    m.procs.exit(1, 0, null, 'SIGTERM');
    expect(m.state()).toBe('spawning');
    expect(m.procs.get(1, 0).disposed).toBe(true);
    m.procs.start(2, 0, 200);
    expect(m.replyTo('second')).toMatchObject({ result: { generation: 2, nodes: [{ index: 0, pid: 200 }] } });
    expect(m.replies.map((r) => r.to)).toEqual(['first', 'second']);
  });

  test('a connect from a previous generation is refused', () => {
    const m = startManager();
    m.generate('a', 1);
    m.procs.start(1, 0, 100);
    m.generate('b', 1);
    m.procs.exit(1, 0, null, 'SIGTERM');
    m.procs.start(2, 0, 200);
    m.actor.send({ type: 'connect', to: 'late', pid: 100, pgid: 100, at: 1 });
    expect(m.replyTo('late')).toMatchObject({ error: { code: 'UNKNOWN_NODE' } });
  });

  test('kill: by index and by pid, then again on the killed node, and on nodes that do not exist', () => {
    const m = startManager();
    m.generate('g', 2);
    m.procs.start(1, 0, 100);
    m.procs.start(1, 1, 101);
    m.actor.send({ type: 'kill', to: 'k1', index: 0 });
    expect(m.state()).toBe('killing');
    expect(m.procs.get(1, 0).stops).toBe(1);
    expect(m.replyTo('k1')).toBeUndefined();
    m.procs.exit(1, 0, null, 'SIGTERM');
    expect(m.replyTo('k1')).toMatchObject({ result: { pid: 100, exitCode: null, signal: 'SIGTERM', outcome: 'terminated' } });
    // Only that node's strays are swept.
    expect(m.sweeps).toEqual([{ generation: 1, index: 0 }]);
    // Killing it again answers at once with the recorded outcome, sending nothing.
    m.actor.send({ type: 'kill', to: 'k2', pid: 100 });
    expect(m.replyTo('k2')).toMatchObject({ result: { pid: 100, exitCode: null, signal: 'SIGTERM' } });
    expect(m.procs.get(1, 0).stops).toBe(1);
    m.actor.send({ type: 'kill', to: 'k3', index: 9 });
    m.actor.send({ type: 'kill', to: 'k4', pid: 4242 });
    expect(m.replyTo('k3')).toMatchObject({ error: { code: 'UNKNOWN_NODE' } });
    expect(m.replyTo('k4')).toMatchObject({ error: { code: 'UNKNOWN_NODE' } });
    expect(m.status().counts).toEqual({ spawning: 1, running: 0, killed: 1 });
  });

  test('reset replies once every node is reaped, with the number it killed, and forgets them', () => {
    const m = startManager();
    m.generate('g', 3);
    [100, 101, 102].forEach((pid, i) => m.procs.start(1, i, pid));
    m.procs.exit(1, 2, 0, null); // exited on its own before the reset
    m.actor.send({ type: 'reset', to: 'r' });
    expect(m.state()).toBe('resetting');
    m.procs.exit(1, 0, null, 'SIGTERM');
    expect(m.replyTo('r')).toBeUndefined();
    m.setStrays(4);
    m.procs.exit(1, 1, null, 'SIGKILL', true);
    // Per-node outcomes: on its own, after SIGTERM, after the grace ran out; and what the sweep found.
    expect(m.replyTo('r')).toEqual({
      type: 'reply',
      to: 'r',
      result: {
        killed: 2,
        outcomes: { exited: 1, terminated: 1, killed: 1 },
        nodes: [
          { index: 0, pid: 100, outcome: 'terminated', exitCode: null, signal: 'SIGTERM' },
          { index: 1, pid: 101, outcome: 'killed', exitCode: null, signal: 'SIGKILL' },
          { index: 2, pid: 102, outcome: 'exited', exitCode: 0, signal: null },
        ],
        strays: { cgroup: 0, sweep: 4 },
      },
    });
    expect(m.sweeps).toEqual([{ generation: 1, index: null }]);
    expect(m.status()).toMatchObject({ state: 'idle', generation: 1, nodes: [], counts: { spawning: 0, running: 0, killed: 0 } });
  });

  test('reset after a kill: the node the kill stopped is not counted again (it was in the kill reply)', () => {
    const m = startManager();
    m.generate('g', 3);
    [100, 101, 102].forEach((pid, i) => m.procs.start(1, i, pid));
    m.actor.send({ type: 'kill', to: 'k', index: 1 });
    m.procs.exit(1, 1, null, 'SIGTERM');
    expect(m.replyTo('k')).toMatchObject({ result: { pid: 101, outcome: 'terminated' } });
    m.actor.send({ type: 'reset', to: 'r' });
    m.procs.exit(1, 0, null, 'SIGTERM');
    m.procs.exit(1, 2, null, 'SIGTERM');
    expect(m.replyTo('r')).toMatchObject({
      result: {
        killed: 2,
        outcomes: { exited: 0, terminated: 2, killed: 0 },
        nodes: [
          { index: 0, pid: 100, outcome: 'terminated' },
          { index: 2, pid: 102, outcome: 'terminated' },
        ],
      },
    });
  });

  test('a spawn failure rolls the generation back: launches withdrawn, started nodes reaped, SPAWN_FAILED', () => {
    const m = startManager();
    m.generate('g', 3);
    m.procs.start(1, 0, 100);
    m.procs.fail(1, 1, 'EAGAIN');
    expect(m.state()).toBe('rollingBack');
    expect(m.procs.get(1, 0).stops).toBe(1);
    expect(m.procs.get(1, 2).stops).toBe(1); // still queued: asked to cancel
    m.procs.get(1, 2).send({ type: 'process.failed', code: 'ECANCELED', message: 'cancelled' });
    expect(m.replyTo('g')).toBeUndefined();
    m.procs.exit(1, 0, null, 'SIGTERM');
    expect(m.replyTo('g')).toMatchObject({ error: { code: 'SPAWN_FAILED', details: [{ index: 1, code: 'EAGAIN' }] } });
    // The rolled-back generation stays visible until the next reset: who was killed, who failed and why.
    expect(m.status()).toMatchObject({
      state: 'idle',
      generation: 1,
      target: 3,
      nodes: [{ index: 0, pid: 100, state: 'killed' }],
      counts: { spawning: 0, running: 0, killed: 1 },
      failed: [{ index: 1, code: 'EAGAIN', message: 'spawn x EAGAIN' }],
    });
    // The rollback swept the run for strays too.
    expect(m.sweeps).toEqual([{ generation: 1, index: null }]);
    m.actor.send({ type: 'reset', to: 'r' });
    expect(m.replyTo('r')).toMatchObject({ result: { killed: 0 } });
    expect(m.status()).toMatchObject({ nodes: [], failed: [] });
  });

  test('generate 0 is a plain reset that still counts as a generation', () => {
    const m = startManager();
    m.generate('a', 1);
    m.procs.start(1, 0, 100);
    m.generate('zero', 0, 'connected');
    m.procs.exit(1, 0, null, 'SIGTERM');
    expect(m.replyTo('zero')).toMatchObject({ result: { generation: 2, nodes: [] } });
    expect(m.published).toContainEqual({ event: 'ready', generation: 2, n: 0 });
  });

  test('every phase change of a node is emitted once as `phase` (for the timeline), the steps the protocol does not show included', () => {
    const m = startManager();
    const phases: string[] = [];
    m.actor.on('phase', ({ view, from }) => phases.push(`${view.generation}:${view.index} ${from}>${view.phase}`));
    m.generate('a', 2);
    m.procs.start(1, 0, 100);
    m.procs.start(1, 1, 101);
    m.actor.send({ type: 'connect', to: 'c', pid: 100, pgid: 100, at: 5 });
    m.actor.send({ type: 'connect', to: 'c', pid: 100, pgid: 100, at: 6, nodeId: 'again' }); // same phase: nothing
    m.actor.send({ type: 'reset', to: 'r' });
    m.procs.exit(1, 1, 0, null);
    m.procs.exit(1, 0, 0, null);
    m.generate('b', 1);
    m.procs.fail(2, 0, 'EAGAIN');
    expect(phases).toEqual([
      '1:0 launching>spawning', '1:1 launching>spawning', '1:0 spawning>running',
      '1:0 running>stopping', '1:1 spawning>stopping', '1:1 stopping>killed', '1:0 stopping>killed',
      '2:0 launching>failed',
    ]);
  });

  test('beyond maxQueue, state-changing commands get LIMIT', () => {
    const m = startManager(1);
    m.generate('a', 1); // being applied
    m.generate('b', 1); // queued
    m.generate('c', 1); // over the limit
    expect(m.replyTo('c')).toMatchObject({ error: { code: 'LIMIT' } });
    expect(m.replyTo('b')).toBeUndefined();
  });
});
