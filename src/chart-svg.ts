// A statechart model (src/chart.ts) drawn as SVG, for the dashboard and
// `herd chart --format svg`. The layout is derived from the model alone:
//
// - every compound state lays out its children left to right in layers: the
//   initial child first, each child one layer after the latest sibling that
//   leads to it (transitions lifted to the children they start and end in;
//   edges that close a cycle are left out of the layering);
// - a transition between neighbouring layers whose ends are those children is a
//   curve from side to side; a longer one, or one that starts or ends inside a
//   child, runs in a lane above the children; one that goes back, in a lane
//   below. Each lane carries its label;
// - a transition that keeps its state (no target) is a line `↻ event` inside it;
// - parallel transitions (same source and targets) share one curve and label.
//
// Each state is a `<g class="state" data-state="<id>">` and each edge a
// `<g class="edge" data-transitions="<label>|...">`, so that a page can
// highlight the active states by id; `text.count[data-count="<id>"]` is left
// empty for a page to fill (nodes per state).

import { ChartModel, ChartState, ChartTransition, edgeText } from './chart';

const FONT = 12;
const CHAR = 7.25; // advance of a 12 px monospace glyph (DejaVu Sans Mono: 0.602 em)
const SMALL = 10.5;
const SMALL_CHAR = 6.35;
const LINE = 16;
const PAD = 10;
const INIT = 26; // room left of the children for the initial-state marker
const GAP_Y = 22;
const LANE = 18;
const MIN_GAP_X = 46;

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const textWidth = (s: string, small = false) => s.length * (small ? SMALL_CHAR : CHAR);
const round = (n: number) => Math.round(n * 10) / 10;

interface Box {
  state: ChartState;
  /** Relative to the parent box until placed, then absolute. */
  x: number;
  y: number;
  w: number;
  h: number;
  /** Lines under the name: invoked actors, targetless transitions. */
  notes: string[];
  children: Box[];
  /** Height of the title area (name and notes) of a compound box. */
  head: number;
  lanesAbove: Edge[];
  lanesBelow: Edge[];
  parent: Box | null;
  /** Where it sits among its siblings: column, row in that column, and whether those are the last. */
  col: number;
  lastCol: boolean;
  row: number;
  lastRow: boolean;
}

interface Edge {
  transitions: ChartTransition[];
  source: string;
  target: string;
  text: string;
  kind: 'curve' | 'above' | 'below';
  lane: number;
}

/** The child of `box` that is `id` or contains it. */
const childFor = (box: Box, id: string) => box.children.find((c) => id === c.state.id || id.startsWith(`${c.state.id}.`)) ?? null;

/** Merges transitions with the same source and targets; one edge per target. */
function edgesOf(model: ChartModel): Edge[] {
  const byKey = new Map<string, Edge>();
  for (const t of model.transitions) {
    for (const target of t.targets) {
      if (target === t.source) continue; // a self-transition with a target is drawn as a note too
      const key = `${t.source}->${target}`;
      const e = byKey.get(key) ?? { transitions: [], source: t.source, target, text: '', kind: 'curve' as const, lane: 0 };
      e.transitions.push(t);
      e.text = e.transitions.map(edgeText).join(' / ');
      byKey.set(key, e);
    }
  }
  return [...byKey.values()];
}

/** Layers of the children of `box`, by longest path from the initial child over the lifted edges. */
function layers(box: Box, edges: Edge[]): Box[][] {
  const kids = box.children;
  const succ = new Map<Box, Box[]>(kids.map((k) => [k, []]));
  for (const e of edges) {
    const a = childFor(box, e.source);
    const b = childFor(box, e.target);
    if (a && b && a !== b) succ.get(a)!.push(b);
  }
  // Depth-first from the initial child, then the rest in definition order; edges to the stack close a cycle.
  const order: Box[] = [];
  const state = new Map<Box, 'open' | 'done'>();
  const forward = new Map<Box, Box[]>(kids.map((k) => [k, []]));
  const visit = (k: Box) => {
    state.set(k, 'open');
    for (const n of succ.get(k)!) {
      if (state.get(n) === 'open') continue;
      forward.get(n)!.push(k);
      if (!state.has(n)) visit(n);
    }
    state.set(k, 'done');
    order.unshift(k);
  };
  const first = kids.find((k) => k.state.id === box.state.initial);
  for (const k of first ? [first, ...kids.filter((c) => c !== first)] : kids) if (!state.has(k)) visit(k);
  const layer = new Map<Box, number>();
  for (const k of order) layer.set(k, Math.max(-1, ...forward.get(k)!.map((p) => layer.get(p) ?? -1)) + 1);
  const out: Box[][] = [];
  for (const k of kids) (out[layer.get(k)!] ??= []).push(k);
  // Within a layer, follow the mean position of the predecessors (fewer crossings).
  for (let i = 1; i < out.length; i++) {
    const pos = (k: Box) => {
      const preds = forward.get(k)!.map((p) => out[layer.get(p)!].indexOf(p));
      return preds.length ? preds.reduce((a, b) => a + b, 0) / preds.length : 0;
    };
    out[i] = out[i].map((k, j) => ({ k, p: pos(k), j })).sort((a, b) => a.p - b.p || a.j - b.j).map((x) => x.k);
  }
  return out.filter(Boolean);
}

function notesOf(model: ChartModel, state: ChartState): string[] {
  const loops = model.transitions.filter((t) => t.source === state.id && (t.targets.length === 0 || (t.targets.length === 1 && t.targets[0] === state.id)));
  const notes = state.invoke.map((src) => `invoke ${src}`);
  if (loops.length > 0) notes.push(`↻ ${loops.map(edgeText).join(' · ')}`);
  return notes;
}

/** Sizes `box` and places its children (relative to it); assigns the lanes of the edges it holds. */
function layout(model: ChartModel, box: Box, edges: Edge[]): void {
  const { state } = box;
  box.notes = notesOf(model, state);
  const nameW = textWidth(state.key) + (state.type === 'final' ? 8 : 0);
  const notesW = Math.max(0, ...box.notes.map((n) => textWidth(n, true)));
  if (box.children.length === 0) {
    box.w = Math.max(nameW + 40, notesW) + 2 * PAD; // 40: room for a count of up to 5 digits
    box.h = LINE + box.notes.length * (LINE - 2) + 2 * PAD - 4;
    return;
  }
  for (const c of box.children) layout(model, c, edges);
  const cols = layers(box, edges);
  const colOf = new Map<Box, number>();
  cols.forEach((col, i) =>
    col.forEach((k, j) => {
      colOf.set(k, i);
      Object.assign(k, { col: i, lastCol: i === cols.length - 1, row: j, lastRow: j === col.length - 1 });
    }),
  );
  /** Whether a line can leave `inner` sideways (`right`) or enter it (`left`) without crossing a box inside `outer`. */
  const clear = (inner: Box, outer: Box, side: 'left' | 'right') => {
    for (let x: Box = inner; x !== outer; x = x.parent!) if (side === 'right' ? !x.lastCol : x.col !== 0) return false;
    return true;
  };

  // The edges whose lowest common state is this one.
  const mine = edges.filter((e) => {
    const a = childFor(box, e.source);
    const b = childFor(box, e.target);
    return a && b && a !== b;
  });
  const gaps = cols.map(() => MIN_GAP_X);
  for (const e of mine) {
    const a = childFor(box, e.source)!;
    const b = childFor(box, e.target)!;
    const [ca, cb] = [colOf.get(a)!, colOf.get(b)!];
    if (cb === ca + 1 && clear(boxOf(a, e.source), a, 'right') && clear(boxOf(b, e.target), b, 'left')) {
      e.kind = 'curve';
      gaps[ca] = Math.max(gaps[ca], textWidth(e.text, true) + 24);
    } else {
      // A lane on the side where no sibling stands in the way of the lines to it.
      const free = { above: a.row === 0 && b.row === 0, below: a.lastRow && b.lastRow };
      const preferred = cb > ca ? 'above' : 'below';
      e.kind = free[preferred] || (!free.above && !free.below) ? preferred : preferred === 'above' ? 'below' : 'above';
    }
  }
  const span = (e: Edge) => Math.abs(colOf.get(childFor(box, e.target)!)! - colOf.get(childFor(box, e.source)!)!);
  box.lanesAbove = mine.filter((e) => e.kind === 'above').sort((x, y) => span(x) - span(y));
  box.lanesBelow = mine.filter((e) => e.kind === 'below').sort((x, y) => span(x) - span(y));
  box.lanesAbove.forEach((e, i) => (e.lane = i));
  box.lanesBelow.forEach((e, i) => (e.lane = i));

  const colW = cols.map((col) => Math.max(...col.map((k) => k.w)));
  const colH = cols.map((col) => col.reduce((h, k) => h + k.h, 0) + GAP_Y * (col.length - 1));
  const contentH = Math.max(...colH);
  box.head = LINE + box.notes.length * (LINE - 2) + PAD;
  const top = box.head + box.lanesAbove.length * LANE + (box.lanesAbove.length ? 8 : 0);
  let x = PAD + (state.initial ? INIT : 0);
  cols.forEach((col, i) => {
    let y = top + (contentH - colH[i]) / 2;
    for (const k of col) {
      k.x = x + (colW[i] - k.w) / 2;
      k.y = y;
      y += k.h + GAP_Y;
    }
    x += colW[i] + (i < cols.length - 1 ? gaps[i] : 0);
  });
  const lanesW = Math.max(0, ...[...box.lanesAbove, ...box.lanesBelow].map((e) => textWidth(e.text, true)));
  box.w = Math.max(x + PAD, nameW + 2 * PAD, notesW + 2 * PAD, lanesW + 2 * PAD);
  box.h = top + contentH + box.lanesBelow.length * LANE + (box.lanesBelow.length ? 10 : 0) + PAD;
}

/** The box of `id` inside `box` (or `box` itself). */
function boxOf(box: Box, id: string): Box {
  let b = box;
  while (b.state.id !== id) b = childFor(b, id)!;
  return b;
}

/** Relative positions to absolute ones. */
function place(box: Box, dx: number, dy: number): void {
  box.x += dx;
  box.y += dy;
  for (const c of box.children) place(c, box.x, box.y);
}

function boxTree(state: ChartState, parent: Box | null = null): Box {
  const box: Box = { state, x: 0, y: 0, w: 0, h: 0, notes: [], children: [], head: 0, lanesAbove: [], lanesBelow: [], parent, col: 0, lastCol: true, row: 0, lastRow: true };
  box.children = state.states.map((s) => boxTree(s, box));
  return box;
}

/** Spreads the ends that meet one side of a box along it. */
class Ports {
  private readonly ends = new Map<string, { edge: Edge; which: 'from' | 'to' }[]>();
  add(boxId: string, side: 'top' | 'bottom', edge: Edge, which: 'from' | 'to') {
    const key = `${boxId}:${side}`;
    this.ends.set(key, [...(this.ends.get(key) ?? []), { edge, which }]);
  }
  x(box: Box, side: 'top' | 'bottom', edge: Edge, which: 'from' | 'to'): number {
    const list = this.ends.get(`${box.state.id}:${side}`)!;
    const i = list.findIndex((p) => p.edge === edge && p.which === which);
    return box.x + (box.w * (i + 1)) / (list.length + 1);
  }
}

export function chartSvg(model: ChartModel): string {
  const root = boxTree(model.root);
  const edges = edgesOf(model);
  layout(model, root, edges);
  const MARGIN = 4;
  place(root, MARGIN, MARGIN);
  const boxes = new Map<string, Box>();
  const owner = new Map<Edge, Box>();
  const walk = (b: Box) => {
    boxes.set(b.state.id, b);
    for (const e of [...b.lanesAbove, ...b.lanesBelow]) owner.set(e, b);
    b.children.forEach(walk);
  };
  walk(root);

  const ports = new Ports();
  for (const e of edges) {
    if (e.kind === 'curve') continue;
    const side = e.kind === 'above' ? 'top' : 'bottom';
    ports.add(e.source, side, e, 'from');
    ports.add(e.target, side, e, 'to');
  }

  const out: string[] = [];
  const width = Math.ceil(root.w + 2 * MARGIN);
  const height = Math.ceil(root.h + 2 * MARGIN);
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" class="statechart" data-machine="${esc(model.id)}" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="${FONT}">`,
    '<defs><marker id="arrow-' + esc(model.id) + '" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>',
  );

  const drawBox = (b: Box) => {
    const s = b.state;
    const compound = b.children.length > 0;
    const cls = ['state', compound ? 'compound' : 'atomic', s.type === 'final' ? 'final' : ''].filter(Boolean).join(' ');
    out.push(`<g class="${cls}" data-state="${esc(s.id)}">`);
    out.push(`<rect class="box" x="${round(b.x)}" y="${round(b.y)}" width="${round(b.w)}" height="${round(b.h)}" rx="${compound ? 10 : 7}"/>`);
    if (s.type === 'final') out.push(`<rect class="inner" x="${round(b.x + 3)}" y="${round(b.y + 3)}" width="${round(b.w - 6)}" height="${round(b.h - 6)}" rx="5"/>`);
    const tx = compound ? b.x + PAD : b.x + PAD;
    let ty = b.y + PAD + FONT - 1;
    out.push(`<text class="name" x="${round(tx)}" y="${round(ty)}">${esc(s.key)}</text>`);
    for (const n of b.notes) {
      ty += LINE - 2;
      out.push(`<text class="note" x="${round(tx)}" y="${round(ty)}" font-size="${SMALL}">${esc(n)}</text>`);
    }
    if (!compound) out.push(`<text class="count" data-count="${esc(s.id)}" x="${round(b.x + b.w - PAD)}" y="${round(b.y + PAD + FONT - 1)}" text-anchor="end"></text>`);
    if (s.initial) {
      const init = boxes.get(s.initial)!;
      const cy = init.y + init.h / 2;
      const x0 = b.x + PAD + 4;
      out.push(`<circle class="initial" cx="${round(x0)}" cy="${round(cy)}" r="4"/>`);
      out.push(`<path class="edge-line" d="M${round(x0 + 4)},${round(cy)} L${round(init.x)},${round(cy)}" marker-end="url(#arrow-${esc(model.id)})"/>`);
    }
    out.push('</g>');
    b.children.forEach(drawBox);
  };
  drawBox(root);

  const label = (e: Edge, x: number, y: number) => {
    const w = textWidth(e.text, true) + 6;
    out.push(`<rect class="label-bg" x="${round(x - w / 2)}" y="${round(y - SMALL + 1)}" width="${round(w)}" height="${SMALL + 4}" rx="3"/>`);
    out.push(`<text class="label" x="${round(x)}" y="${round(y + 1)}" font-size="${SMALL}" text-anchor="middle">${esc(e.text)}</text>`);
  };

  for (const e of edges) {
    const a = boxes.get(e.source)!;
    const b = boxes.get(e.target)!;
    out.push(`<g class="edge" data-source="${esc(e.source)}" data-target="${esc(e.target)}" data-transitions="${esc(e.transitions.map((t) => t.label).join('|'))}">`);
    out.push(`<title>${esc(e.transitions.map((t) => t.label).join('\n'))}</title>`);
    const arrow = `marker-end="url(#arrow-${esc(model.id)})"`;
    if (e.kind === 'curve') {
      const [x1, y1, x2, y2] = [a.x + a.w, a.y + a.h / 2, b.x, b.y + b.h / 2];
      const d = (x2 - x1) / 2;
      out.push(`<path class="edge-line" d="M${round(x1)},${round(y1)} C${round(x1 + d)},${round(y1)} ${round(x2 - d)},${round(y2)} ${round(x2)},${round(y2)}" ${arrow}/>`);
      label(e, (x1 + x2) / 2, (y1 + y2) / 2);
    } else {
      const o = owner.get(e)!;
      const above = e.kind === 'above';
      const side = above ? 'top' : 'bottom';
      const x1 = ports.x(a, side, e, 'from');
      const x2 = ports.x(b, side, e, 'to');
      const y1 = above ? a.y : a.y + a.h;
      const y2 = above ? b.y : b.y + b.h;
      const firstChildTop = Math.min(...o.children.map((c) => c.y));
      const lastChildBottom = Math.max(...o.children.map((c) => c.y + c.h));
      const ly = above ? firstChildTop - 8 - e.lane * LANE - 4 : lastChildBottom + 10 + e.lane * LANE;
      const r = 6 * Math.sign(x2 - x1);
      const v1 = Math.sign(ly - y1) * 6;
      const v2 = Math.sign(y2 - ly) * 6;
      out.push(
        `<path class="edge-line" d="M${round(x1)},${round(y1)} L${round(x1)},${round(ly - v1)} Q${round(x1)},${round(ly)} ${round(x1 + r)},${round(ly)} L${round(x2 - r)},${round(ly)} Q${round(x2)},${round(ly)} ${round(x2)},${round(ly + v2)} L${round(x2)},${round(y2)}" ${arrow}/>`,
      );
      label(e, (x1 + x2) / 2, ly + (above ? -2 : 4));
    }
    out.push('</g>');
  }
  out.push('</svg>');
  return out.join('\n');
}
