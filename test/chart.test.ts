// The statechart model read from the machine definitions, and its pictures:
// Mermaid, Graphviz dot (parsed and laid out by Graphviz itself, compiled to
// WebAssembly in @viz-js/viz) and the dashboard's SVG. What must be drawn is
// derived from the machines, never listed by hand.

import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { instance } from '@viz-js/viz';
import { AnyStateMachine, createMachine, fromPromise, setup, StateNode } from 'xstate';
import { managerMachine } from '../machines/manager';
import { nodeMachine } from '../machines/node';
import { activeStateIds, allStates, chartModel, ChartModel, edgeText, machineTransitions, toDot, toMermaid } from '../src/chart';
import { chartSvg } from '../src/chart-svg';
import { CLI, ROOT } from './helpers';

const MACHINES: [string, AnyStateMachine][] = [
  ['manager', managerMachine],
  ['node', nodeMachine],
];

/** How toMermaid names a state: its id below the root, dots as underscores. */
const mid = (model: ChartModel, id: string) => id.slice(model.id.length + 1).replace(/\./g, '_');
const isRootLoop = (model: ChartModel, t: ChartModel['transitions'][number]) => t.source === model.id && t.targets.length === 0;

describe.each(MACHINES)('%s chart', (name, machine) => {
  const model = chartModel(machine);

  test('has every state and every transition of the definition', () => {
    // XState's own state nodes and their transition lists.
    const nodes: StateNode<any, any>[] = [];
    const walk = (n: StateNode<any, any>) => (nodes.push(n), Object.values(n.states).forEach(walk));
    walk(machine.root);
    expect(allStates(model).map((s) => s.id).sort()).toEqual(nodes.map((n) => n.id).sort());
    const defined = nodes.reduce((n, s) => n + [...s.transitions.values()].flat().length + (s.always?.length ?? 0), 0);
    expect(model.transitions).toHaveLength(defined);
    expect(new Set(model.transitions.map((t) => t.label)).size).toBe(defined);
    for (const s of allStates(model)) if (s.states.length > 0) expect(s.states.map((c) => c.id)).toContain(s.initial);
  });

  test('mermaid: every state and transition, in lines of the stateDiagram-v2 grammar', () => {
    const text = toMermaid(model);
    const lines = text.trimEnd().split('\n');
    expect(lines.slice(0, 2)).toEqual(['stateDiagram-v2', '  direction LR']);
    const declared = new Set<string>();
    const used: string[] = [];
    let depth = 0;
    let inNote = false;
    for (const line of lines.slice(2)) {
      let m: RegExpExecArray | null;
      if (inNote) inNote = !/^\s*end note$/.test(line);
      else if ((m = /^\s*state "([^"]+)" as ([A-Za-z0-9_]+)( \{)?$/.exec(line))) {
        declared.add(m[2]);
        if (m[3]) depth++;
      } else if (/^\s*\}$/.test(line)) depth--;
      else if ((m = /^\s*(\[\*\]|[A-Za-z0-9_]+) --> (\[\*\]|[A-Za-z0-9_]+)(: [^;\n]+)?$/.exec(line))) used.push(m[1], m[2]);
      else if ((m = /^\s*note (left|right) of ([A-Za-z0-9_]+)$/.exec(line))) {
        used.push(m[2]);
        inNote = true;
      } else throw new Error(`not a stateDiagram-v2 line: ${JSON.stringify(line)}`);
      expect(depth).toBeGreaterThanOrEqual(0);
    }
    expect(depth).toBe(0);
    expect(inNote).toBe(false);
    for (const id of used) if (id !== '[*]') expect(declared).toContain(id);
    for (const s of allStates(model).slice(1)) expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^\\s*state "${s.key}" as ${mid(model, s.id)}( \\{)?$`)));
    for (const t of model.transitions) {
      if (isRootLoop(model, t)) expect(text).toContain(edgeText(t));
      else for (const target of t.targets.length ? t.targets : [t.source]) expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^\\s*${mid(model, t.source)} --> ${mid(model, target)}: ${edgeText(t).replace(/[[\]()]/g, '\\$&')}$`)));
    }
  });

  test('dot: Graphviz lays it out without a warning, with every state and transition', async () => {
    const viz = await instance();
    const result = viz.render(toDot(model), { format: 'json' });
    expect(result.errors).toEqual([]);
    expect(result.status).toBe('success');
    const graph = JSON.parse(result.output!) as { objects: { name: string; label?: string }[]; edges: { tail: number; head: number; label?: string }[] };
    const names = graph.objects.map((o) => o.name);
    for (const s of allStates(model).slice(1)) expect(names).toContain(s.states.length ? `cluster_${s.id}` : s.id);
    const edges = graph.edges.map((e) => `${names[e.tail]} -> ${names[e.head]}: ${e.label ?? ''}`);
    // An edge from or to a compound state is drawn to its start point (and clipped at its cluster).
    const end = (id: string) => (allStates(model).find((s) => s.id === id)!.states.length > 0 ? `${id}.__start` : id);
    for (const t of model.transitions) {
      if (isRootLoop(model, t)) expect(graph.objects.find((o) => o.name === `${model.id}.__note`)!.label).toContain(edgeText(t));
      else for (const target of t.targets.length ? t.targets : [t.source]) expect(edges).toContain(`${end(t.source)} -> ${end(target)}: ${edgeText(t)}`);
    }
  });

  test('svg: a group per state and every transition on an edge or inside its state', () => {
    const svg = chartSvg(model);
    for (const s of allStates(model)) expect(svg).toContain(`data-state="${s.id}"`);
    const onEdges = [...svg.matchAll(/data-transitions="([^"]*)"/g)].flatMap((m) => m[1].split('|').map((l) => l.replace(/&gt;/g, '>').replace(/&quot;/g, '"')));
    for (const t of model.transitions) {
      if (t.targets.length === 0 || t.targets[0] === t.source) expect(svg).toMatch(new RegExp(`class="note"[^>]*>↻ [^<]*${t.event.replace(/\./g, '\\.')}`));
      else expect(onEdges).toContain(t.label);
    }
    expect(svg.match(/<svg/g)).toHaveLength(1);
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"[^>]* viewBox="0 0 \d+ \d+"/);
  });

  test(`herd chart --machine ${name} prints the same pictures`, () => {
    for (const [format, render] of [['mermaid', toMermaid], ['dot', toDot], ['svg', chartSvg]] as const) {
      const r = spawnSync(process.execPath, [CLI, 'chart', '--format', format, '--machine', name], { encoding: 'utf8' });
      expect(r.status).toBe(0);
      expect(r.stdout).toBe(render(model));
    }
  });
});

test('transitions of every kind get a readable event: after, invoke done and error, state done, always', () => {
  const machine = setup({
    actors: { worker: fromPromise(async () => 1) },
    guards: { ready: () => true },
    delays: {},
  }).createMachine({
    id: 'demo',
    initial: 'waiting',
    states: {
      waiting: { after: { 500: 'working' }, on: { poke: { guard: 'ready', target: 'working' }, noop: {} } },
      working: {
        initial: 'running',
        states: {
          running: { invoke: { src: 'worker', onDone: 'finished', onError: 'finished' } },
          finished: { type: 'final' },
        },
        onDone: 'checked',
      },
      checked: { always: [{ guard: 'ready', target: 'done' }, { target: 'waiting' }] },
      done: { type: 'final' },
    },
  });
  const model = chartModel(machine);
  expect(model.transitions.map((t) => [t.source, edgeText(t), t.targets])).toEqual([
    ['demo.waiting', 'poke [ready]', ['demo.working']],
    ['demo.waiting', 'noop', []],
    ['demo.waiting', 'after 500ms', ['demo.working']],
    ['demo.working', 'done', ['demo.checked']],
    ['demo.working.running', 'done: worker', ['demo.working.finished']],
    ['demo.working.running', 'error: worker', ['demo.working.finished']],
    ['demo.checked', '[ready]', ['demo.done']],
    ['demo.checked', 'always', ['demo.waiting']],
  ]);
  expect(allStates(model).find((s) => s.id === 'demo.working.running')!.invoke).toEqual(['worker']);
  expect(allStates(model).find((s) => s.id === 'demo.done')!.type).toBe('final');
  // A change to a machine changes the picture.
  const smaller = createMachine({ id: 'demo', initial: 'waiting', states: { waiting: { on: { poke: 'done' } }, done: { type: 'final' } } });
  expect(toMermaid(chartModel(smaller))).not.toBe(toMermaid(model));
  expect(machineTransitions(smaller).map((t) => t.label)).toEqual(['#demo.waiting poke -> #demo.done']);
});

test('activeStateIds: the ids of a state value, outermost first', () => {
  expect(activeStateIds('manager', 'idle')).toEqual(['manager.idle']);
  expect(activeStateIds('manager', { resetting: 'sweeping' })).toEqual(['manager.resetting', 'manager.resetting.sweeping']);
  expect(activeStateIds('p', { a: { b: 'c' }, d: 'e' })).toEqual(['p.a', 'p.a.b', 'p.a.b.c', 'p.d', 'p.d.e']);
});

test('herd chart refuses what it cannot draw, with exit status 2', () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [CLI, 'chart', ...args], { encoding: 'utf8' });
  expect(run('--format', 'png')).toMatchObject({ status: 2, stderr: expect.stringContaining('--format must be one of mermaid, dot, svg') });
  expect(run('--machine', 'robot')).toMatchObject({ status: 2, stderr: expect.stringContaining('--machine must be one of manager, node') });
  expect(run('--format', 'svg')).toMatchObject({ status: 2, stderr: expect.stringContaining('add --machine') });
  expect(run().stdout).toBe(`${toMermaid(chartModel(managerMachine))}\n${toMermaid(chartModel(nodeMachine))}`);
});

test("the README's diagrams are herd chart's output", () => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  for (const [name, machine] of MACHINES) {
    const block = '```mermaid\n' + toMermaid(chartModel(machine)) + '```';
    if (!readme.includes(block)) throw new Error(`README.md's ${name} diagram is out of date: paste the output of npx herd chart --machine ${name}`);
  }
});
