// The herd dashboard page: reads the manager's event stream (/events, Server-Sent
// Events) and draws it. Read-only: it never sends anything back. Updates are
// gathered as they arrive and applied once per animation frame, so a generate of
// 1000 nodes costs a few DOM writes per node, not a layout per event.
'use strict';

const $ = (id) => document.getElementById(id);
const SVG_NS = 'http://www.w3.org/2000/svg';
/** The CPU chart spans the samples it has, from 30 s up to 5 min. */
const CPU_WINDOW_MS = 5 * 60_000;
const CPU_MIN_WINDOW_MS = 30_000;
const LOG_LINES = 500;
const PHASES = ['launching', 'spawning', 'running', 'stopping', 'killed', 'failed'];

const view = {
  /** index -> { el, pid, phase, cpu, rss } */
  cells: [],
  generation: -1,
  count: 0,
  history: [],
  // Pending work for the next frame.
  dirtyCells: new Set(),
  trim: false,
  manager: null,
  counts: null,
  stats: null,
  chart: false,
  log: [],
};

let frame = 0;
function later() {
  if (!frame) frame = requestAnimationFrame(render);
}

// ---- stream ---------------------------------------------------------------------

const stream = new EventSource('events');
const on = (name, fn) => stream.addEventListener(name, (e) => fn(JSON.parse(e.data)));

stream.onopen = () => setConnection('live', 'live');
stream.onerror = () => setConnection('down', stream.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting');

function setConnection(cls, text) {
  const el = $('connection');
  el.className = cls;
  el.textContent = text;
}

on('init', (d) => {
  $('title').textContent = d.title;
  document.title = `herd ${d.title}`;
  $('chart-manager').innerHTML = d.charts.manager.svg;
  $('chart-node').innerHTML = d.charts.node.svg;
  for (const c of view.cells) c && c.el.remove();
  view.cells = [];
  view.history = d.history;
  $('log').replaceChildren();
  applyNodes({ generation: d.generation, count: d.nodes.length, fresh: true, changes: d.nodes, counts: d.counts });
  view.manager = d.manager;
  if (d.stats) applyStats(d.stats);
  view.chart = true;
  view.log.push(...d.log);
  later();
});

on('manager', (d) => {
  view.manager = d.active;
  later();
});

on('nodes', (d) => {
  applyNodes(d);
  later();
});

on('stats', (d) => {
  view.history.push({ time: d.time, load: d.host.load, cpus: d.host.cpus, memUsed: d.host.memUsed, memTotal: d.host.memTotal });
  const cutoff = d.time - CPU_WINDOW_MS * 2;
  while (view.history.length && view.history[0].time < cutoff) view.history.shift();
  applyStats(d);
  view.chart = true;
  later();
});

on('log', (lines) => {
  view.log.push(...lines);
  later();
});

function applyNodes(d) {
  if (d.fresh || d.generation !== view.generation) {
    for (const c of view.cells) c && c.el.remove();
    view.cells = [];
  }
  view.generation = d.generation;
  for (const [index, pid, phase, state] of d.changes) {
    const cell = view.cells[index] || (view.cells[index] = { el: null, pid: null, phase: null, state: null, cpu: null, rss: null });
    Object.assign(cell, { pid, phase, state });
    view.dirtyCells.add(index);
  }
  if (d.count < view.count || d.count < view.cells.length) view.trim = true;
  view.count = d.count;
  view.counts = d.counts;
}

function applyStats(d) {
  view.stats = d;
  for (const [index, pid, cpu, rss] of d.nodes) {
    const cell = view.cells[index];
    if (!cell || cell.pid !== pid) continue;
    cell.cpu = cpu;
    cell.rss = rss;
    view.dirtyCells.add(index);
  }
}

// ---- drawing --------------------------------------------------------------------

function render() {
  frame = 0;
  if (view.manager) drawManager(view.manager);
  view.manager = null;
  if (view.counts) drawCounts(view.counts);
  view.counts = null;
  if (view.trim) trimCells();
  if (view.dirtyCells.size) drawCells();
  if (view.stats) drawLegend(view.stats);
  view.stats = null;
  if (view.chart) drawCpu();
  view.chart = false;
  if (view.log.length) drawLog(view.log.splice(0));
}

function drawManager(active) {
  const svg = $('chart-manager').querySelector('svg');
  if (!svg) return;
  const set = new Set(active);
  for (const g of svg.querySelectorAll('g.state')) g.classList.toggle('active', set.has(g.dataset.state));
  const leaf = active[active.length - 1] || '';
  $('manager-state').textContent = leaf.slice(leaf.indexOf('.') + 1);
  $('generation').textContent = String(view.generation);
}

function drawCounts(counts) {
  const svg = $('chart-node').querySelector('svg');
  if (!svg) return;
  // A compound state is active when any state inside it has nodes.
  const live = Object.keys(counts).filter((id) => counts[id] > 0);
  for (const g of svg.querySelectorAll('g.state')) {
    const id = g.dataset.state;
    g.classList.toggle('active', live.some((s) => s === id || s.startsWith(`${id}.`)) && id.includes('.'));
  }
  for (const t of svg.querySelectorAll('text.count')) t.textContent = counts[t.dataset.count] ? String(counts[t.dataset.count]) : '';
  const byPhase = {};
  for (const c of view.cells) if (c) byPhase[c.phase] = (byPhase[c.phase] || 0) + 1;
  $('node-summary').textContent = PHASES.filter((p) => byPhase[p]).map((p) => `${byPhase[p]} ${p}`).join(' · ') || 'none';
  $('generation').textContent = String(view.generation);
}

function trimCells() {
  view.trim = false;
  for (let i = view.count; i < view.cells.length; i++) {
    const c = view.cells[i];
    if (c && c.el) c.el.remove();
  }
  view.cells.length = Math.min(view.cells.length, view.count);
}

function drawCells() {
  const grid = $('grid');
  const added = document.createDocumentFragment();
  for (const index of [...view.dirtyCells].sort((a, b) => a - b)) {
    const c = view.cells[index];
    if (!c) continue;
    if (!c.el) {
      c.el = document.createElement('div');
      c.el.dataset.index = String(index);
      c.el.append(document.createElement('b'), document.createElement('span'));
      c.el.firstChild.textContent = String(index);
      added.append(c.el);
    }
    c.el.className = `cell ${c.phase}`;
    c.el.dataset.phase = c.phase;
    c.el.lastChild.textContent = c.cpu === null ? '' : c.cpu.toFixed(1);
    c.el.title = `node ${index}  pid ${c.pid ?? '-'}  ${c.phase}${c.state ? ` (${c.state})` : ''}` + (c.cpu === null ? '' : `\ncpu ${c.cpu.toFixed(1)}% of a core  rss ${mib(c.rss)}`);
  }
  view.dirtyCells.clear();
  if (added.childNodes.length) {
    grid.append(added);
    // Cells arrive in batches: keep them in index order.
    const els = [...grid.children];
    if (els.some((el, i) => i > 0 && Number(el.dataset.index) < Number(els[i - 1].dataset.index))) {
      els.sort((a, b) => a.dataset.index - b.dataset.index);
      grid.append(...els);
    }
  }
}

const mib = (bytes) => (bytes === null || bytes === undefined ? '-' : bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : `${Math.round(bytes / 2 ** 20)} MiB`);

function drawLegend(d) {
  const cores = d.host.cpus.map((v, i) => `cpu${i} ${v.toFixed(1)}%`).join(' · ');
  const nodeCpu = d.nodes.reduce((s, n) => s + n[2], 0);
  $('cpu-legend').textContent = `total ${d.host.load.toFixed(1)}% · ${cores} · nodes ${nodeCpu.toFixed(1)}% of a core · mem ${mib(d.host.memUsed)} / ${mib(d.host.memTotal)}`;
}

function drawCpu() {
  const svg = $('cpu');
  const W = 600;
  const H = 170;
  const top = 12;
  const bottom = H - 16;
  const h = view.history;
  const end = h.length ? h[h.length - 1].time : Date.now();
  const span = Math.min(CPU_WINDOW_MS, Math.max(CPU_MIN_WINDOW_MS, h.length ? end - h[0].time : 0));
  const start = end - span;
  const x = (t) => ((t - start) / span) * W;
  const y = (v) => bottom - (Math.max(0, Math.min(100, v)) / 100) * (bottom - top);
  const shown = h.filter((s) => s.time >= start);
  const parts = [];
  for (const v of [0, 25, 50, 75, 100]) parts.push(`<line class="grid" x1="0" x2="${W}" y1="${y(v)}" y2="${y(v)}"/><text class="axis" x="2" y="${y(v) - 2}">${v}%</text>`);
  const tick = span > 120_000 ? 60_000 : 10_000;
  for (let t = tick; t < span; t += tick) {
    const label = tick === 60_000 ? `-${t / 60_000} min` : `-${t / 1000} s`;
    parts.push(`<line class="grid" x1="${x(end - t)}" x2="${x(end - t)}" y1="${top}" y2="${bottom}"/><text class="axis" x="${x(end - t) + 2}" y="${H - 4}">${label}</text>`);
  }
  const cores = shown.length ? shown[shown.length - 1].cpus.length : 0;
  for (let i = 0; i < cores; i++) parts.push(`<polyline class="core" points="${shown.map((s) => `${x(s.time).toFixed(1)},${y(s.cpus[i] ?? 0).toFixed(1)}`).join(' ')}"/>`);
  parts.push(`<polyline class="load" points="${shown.map((s) => `${x(s.time).toFixed(1)},${y(s.load).toFixed(1)}`).join(' ')}"/>`);
  svg.innerHTML = parts.join('');
  svg.setAttribute('xmlns', SVG_NS);
  $('cpu-window').textContent = shown.length ? `(last ${Math.round((end - Math.max(start, shown[0].time)) / 1000)} s, ${shown.length} samples)` : '(no samples yet)';
}

function drawLog(lines) {
  const list = $('log');
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  const frag = document.createDocumentFragment();
  for (const l of lines.slice(-LOG_LINES)) {
    const li = document.createElement('li');
    li.className = l.kind.split(' ').join('-');
    const t = document.createElement('time');
    t.textContent = new Date(l.time).toTimeString().slice(0, 8) + '.' + String(l.time % 1000).padStart(3, '0');
    li.append(t, ` ${l.text}`);
    frag.append(li);
  }
  list.append(frag);
  while (list.childElementCount > LOG_LINES) list.firstElementChild.remove();
  if (atBottom) list.scrollTop = list.scrollHeight;
}
