// The statecharts as plain data, read from the XState machine definitions (never
// drawn by hand: a change to a machine changes every picture), and rendered as
// Mermaid (`stateDiagram-v2`) or Graphviz dot for docs (`herd chart`). The same
// model feeds the dashboard's SVG (src/chart-svg.ts) and the model-based tests'
// transition coverage (test/machines.model.test.ts).

import type { AnyStateMachine, StateNode, StateValue } from 'xstate';

type AnyStateNode = StateNode<any, any>;

export interface ChartState {
  /** The XState id, e.g. `manager.resetting.stopping`. */
  id: string;
  /** The last part of the id: what a picture shows. */
  key: string;
  type: 'atomic' | 'compound' | 'parallel' | 'final' | 'history';
  /** Id of the initial child (compound states). */
  initial: string | null;
  /** Sources of the actors this state invokes. */
  invoke: string[];
  states: ChartState[];
}

export interface ChartTransition {
  /** Id of the state that defines it. */
  source: string;
  /** Ids of its targets; empty for a targetless transition (actions only, the state is kept). */
  targets: string[];
  /** The event as a picture shows it: `generate`, `done: sweep`, `after 500ms`, `always`. */
  event: string;
  guard: string | null;
  /** Unique in its machine: `#source event [guard] -> #target`, as the coverage report lists it. */
  label: string;
}

export interface ChartModel {
  id: string;
  root: ChartState;
  transitions: ChartTransition[];
}

/** A transition with the XState definition object it was read from (the coverage test keys on it). */
export interface DefinedTransition extends ChartTransition {
  definition: object;
  /** The XState event type (`xstate.done.actor.0.manager.resetting.sweeping`, ...; `always` for eventless). */
  eventType: string;
}

function guardName(guard: unknown): string | null {
  if (!guard) return null;
  if (typeof guard === 'string') return guard;
  // and() / or() / not(): a function carrying its operands
  if (typeof guard === 'function' && 'guards' in guard) return `${guard.name}(${(guard as unknown as { guards: unknown[] }).guards.map(guardName).join(', ')})`;
  if (typeof guard === 'object' && 'type' in guard) return String((guard as { type: unknown }).type);
  return 'inline';
}

/** `xstate.done.actor.<invoke id>` -> `done: <src>`, `xstate.after.<delay>.<id>` -> `after <delay>ms`, ... */
function eventLabel(node: AnyStateNode, eventType: string): string {
  const actor = /^xstate\.(done|error)\.actor\.(.+)$/.exec(eventType);
  if (actor) {
    const invoked = node.invoke.find((i) => i.id === actor[2]);
    return `${actor[1]}: ${invoked ? String(invoked.src) : actor[2]}`;
  }
  if (eventType.startsWith('xstate.done.state.')) return 'done';
  const after = /^xstate\.after\.(\d+)\./.exec(eventType);
  if (after) return `after ${after[1]}ms`;
  return eventType;
}

/**
 * Every transition a chart defines: event transitions (including invoke done/error
 * and delayed ones) and eventless `always` transitions, in definition order.
 */
export function machineTransitions(machine: AnyStateMachine): DefinedTransition[] {
  const out: DefinedTransition[] = [];
  const used = new Map<string, number>();
  const add = (node: AnyStateNode, eventType: string, t: { guard?: unknown; target?: readonly AnyStateNode[] }) => {
    const guard = guardName(t.guard);
    const targets = (t.target ?? []).map((s) => s.id);
    let label = `#${node.id} ${eventType}${guard ? ` [${guard}]` : ''} -> ${targets.length > 0 ? targets.map((id) => `#${id}`).join(',') : '(no target)'}`;
    const seen = used.get(label) ?? 0;
    used.set(label, seen + 1);
    if (seen > 0) label += ` (${seen + 1})`;
    const event = eventType === 'always' ? 'always' : eventLabel(node, eventType);
    out.push({ definition: t, source: node.id, targets, eventType, event, guard, label });
  };
  const visit = (node: AnyStateNode) => {
    for (const [eventType, list] of node.transitions) for (const t of list) add(node, eventType, t);
    for (const t of node.always ?? []) add(node, 'always', t);
    for (const child of Object.values(node.states) as AnyStateNode[]) visit(child);
  };
  visit(machine.root as AnyStateNode);
  return out;
}

function stateOf(node: AnyStateNode): ChartState {
  return {
    id: node.id,
    key: node.key,
    type: node.type,
    initial: node.initial?.target?.[0]?.id ?? null,
    invoke: node.invoke.map((i) => String(i.src)),
    states: (Object.values(node.states) as AnyStateNode[]).map(stateOf),
  };
}

export function chartModel(machine: AnyStateMachine): ChartModel {
  return {
    id: machine.id,
    root: stateOf(machine.root as AnyStateNode),
    transitions: machineTransitions(machine).map(({ source, targets, event, guard, label }) => ({ source, targets, event, guard, label })),
  };
}

/** Every state of the model, depth first (the root included). */
export function allStates(model: ChartModel): ChartState[] {
  const out: ChartState[] = [];
  const visit = (s: ChartState) => {
    out.push(s);
    s.states.forEach(visit);
  };
  visit(model.root);
  return out;
}

/** Ids of the states a state value is in, outermost first: `{resetting: 'sweeping'}` -> `m.resetting`, `m.resetting.sweeping`. */
export function activeStateIds(machineId: string, value: StateValue): string[] {
  const out: string[] = [];
  const visit = (prefix: string, v: StateValue) => {
    if (typeof v === 'string') {
      out.push(`${prefix}.${v}`);
      return;
    }
    for (const [key, sub] of Object.entries(v)) {
      out.push(`${prefix}.${key}`);
      if (sub !== undefined) visit(`${prefix}.${key}`, sub);
    }
  };
  visit(machineId, value);
  return out;
}

/** What a picture writes on an edge: `event [guard]`, or just `[guard]` for a guarded eventless one. */
export function edgeText(t: ChartTransition): string {
  if (t.event === 'always' && t.guard) return `[${t.guard}]`;
  return t.guard ? `${t.event} [${t.guard}]` : t.event;
}

// ---- Mermaid ------------------------------------------------------------------

/** Mermaid ids are global and plain: the XState id below the root, dots as underscores. */
const mermaidId = (model: ChartModel, id: string) => id.slice(model.id.length + 1).replace(/[^A-Za-z0-9_]/g, '_');
/** A Mermaid label ends at a newline; `;` would end the statement. */
const mermaidText = (text: string) => text.replace(/[;\n]/g, ' ').replace(/\s+/g, ' ').trim();

/** The child of `scope` that contains `id` (or is it), or null when `id` is outside `scope`. */
function childContaining(scope: ChartState, id: string): ChartState | null {
  return scope.states.find((c) => id === c.id || id.startsWith(`${c.id}.`)) ?? null;
}

/** The innermost state whose block holds a transition between `a` and `b`. */
function commonScope(model: ChartModel, a: string, b: string): ChartState {
  let scope = model.root;
  for (;;) {
    const ca = childContaining(scope, a);
    if (!ca || ca !== childContaining(scope, b) || ca.id === a || ca.id === b) return scope;
    scope = ca;
  }
}

export function toMermaid(model: ChartModel): string {
  const lines = ['stateDiagram-v2', '  direction LR'];
  const edgesIn = new Map<string, ChartTransition[]>();
  for (const t of model.transitions) {
    // A targetless transition is drawn as a loop on its state; on the root, as a note.
    const scope = t.targets.length === 0 ? commonScope(model, t.source, t.source) : commonScope(model, t.source, t.targets[0]);
    edgesIn.set(scope.id, [...(edgesIn.get(scope.id) ?? []), t]);
  }
  const block = (scope: ChartState, indent: string) => {
    for (const s of scope.states) {
      const id = mermaidId(model, s.id);
      if (s.states.length > 0) {
        lines.push(`${indent}state "${mermaidText(s.key)}" as ${id} {`);
        block(s, `${indent}  `);
        lines.push(`${indent}}`);
      } else {
        lines.push(`${indent}state "${mermaidText(s.key)}" as ${id}`);
      }
    }
    if (scope.initial) lines.push(`${indent}[*] --> ${mermaidId(model, scope.initial)}`);
    for (const t of edgesIn.get(scope.id) ?? []) {
      const text = mermaidText(edgeText(t));
      if (t.source === model.id) continue; // notes, below
      const from = mermaidId(model, t.source);
      for (const target of t.targets.length > 0 ? t.targets : [t.source]) lines.push(`${indent}${from} --> ${mermaidId(model, target)}: ${text}`);
    }
    for (const s of scope.states) if (s.type === 'final') lines.push(`${indent}${mermaidId(model, s.id)} --> [*]`);
  };
  block(model.root, '  ');
  const rootLoops = model.transitions.filter((t) => t.source === model.id && t.targets.length === 0);
  if (rootLoops.length > 0 && model.root.initial) {
    lines.push(`  note left of ${mermaidId(model, model.root.initial)}`);
    lines.push(`    in every state, without leaving it: ${rootLoops.map((t) => mermaidText(edgeText(t))).join(', ')}`);
    lines.push('  end note');
  }
  return `${lines.join('\n')}\n`;
}

// ---- Graphviz dot -----------------------------------------------------------------

const dotString = (text: string) => `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
/** The point node that marks where a compound state starts (an edge to the cluster ends there). */
const startOf = (id: string) => `${id}.__start`;

export function toDot(model: ChartModel): string {
  const lines = [
    `digraph ${dotString(model.id)} {`,
    '  rankdir=LR; compound=true;',
    '  node [shape=box, style=rounded, fontname="Helvetica", fontsize=11];',
    '  edge [fontname="Helvetica", fontsize=9];',
  ];
  const byId = new Map(allStates(model).map((s) => [s.id, s]));
  const isCluster = (id: string) => (byId.get(id)?.states.length ?? 0) > 0;
  // An edge from or to a compound state is drawn to its start point, clipped at the cluster.
  const end = (id: string) => (isCluster(id) ? startOf(id) : id);
  const block = (scope: ChartState, indent: string) => {
    if (scope.initial) {
      lines.push(`${indent}${dotString(startOf(scope.id))} [shape=point, width=0.12, label=""];`);
      lines.push(`${indent}${dotString(startOf(scope.id))} -> ${dotString(end(scope.initial))}${isCluster(scope.initial) ? ` [lhead=${dotString(`cluster_${scope.initial}`)}]` : ''};`);
    }
    for (const s of scope.states) {
      if (s.states.length > 0) {
        lines.push(`${indent}subgraph ${dotString(`cluster_${s.id}`)} {`);
        lines.push(`${indent}  label=${dotString(s.key)}; style=rounded;`);
        block(s, `${indent}  `);
        lines.push(`${indent}}`);
      } else {
        const extra = [s.type === 'final' ? 'peripheries=2' : '', s.invoke.length > 0 ? `xlabel=${dotString(`invoke ${s.invoke.join(', ')}`)}` : ''].filter(Boolean);
        lines.push(`${indent}${dotString(s.id)} [label=${dotString(s.key)}${extra.map((e) => `, ${e}`).join('')}];`);
      }
    }
  };
  block(model.root, '  ');
  const rootLoops: string[] = [];
  for (const t of model.transitions) {
    const text = edgeText(t);
    if (t.source === model.id && t.targets.length === 0) {
      rootLoops.push(text);
      continue;
    }
    for (const target of t.targets.length > 0 ? t.targets : [t.source]) {
      const attrs = [`label=${dotString(text)}`];
      if (isCluster(t.source)) attrs.push(`ltail=${dotString(`cluster_${t.source}`)}`);
      if (isCluster(target) && target !== t.source) attrs.push(`lhead=${dotString(`cluster_${target}`)}`);
      lines.push(`  ${dotString(end(t.source))} -> ${dotString(end(target))} [${attrs.join(', ')}];`);
    }
  }
  if (rootLoops.length > 0) {
    lines.push(`  ${dotString(`${model.id}.__note`)} [shape=note, label=${dotString(`in every state, without leaving it:\n${rootLoops.join(', ')}`)}];`);
  }
  lines.push('}');
  return `${lines.join('\n')}\n`;
}
