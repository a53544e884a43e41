// The offline dashboard (`herd manager --dashboard`): an HTTP server on loopback
// that serves the page in dashboard/ and pushes what the manager does over
// Server-Sent Events (GET /events). It is read-only: no request changes anything.
//
// Stream (each `event: <name>` carries one JSON `data:` line):
//   init     on connect: both charts (model and SVG), the manager's active states,
//            every node, the host CPU history, the recent event log
//   manager  the manager chart's active states, on every change
//   nodes    node changes since the last batch ([index, pid, phase, node-chart state]),
//            the node count and the nodes per node-chart state; at most one batch
//            every FLUSH_MS, however many nodes change. A reset's nodes stay, killed,
//            until the next generation (`fresh`) replaces them
//   stats    each sample of the sampler: the numbers `herd stats` reports
//   log      new lines of the event log (node events, commands accepted and answered,
//            manager state changes), batched like `nodes`
//
// A client that leaves more than `maxUnread` bytes unread is dropped, so a stalled
// page costs at most that much memory; it reconnects (EventSource does) and gets
// a fresh `init`.

import { readFileSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import { managerMachine } from '../machines/manager';
import { nodeMachine, NodeView } from '../machines/node';
import { activeStateIds, chartModel, ChartModel } from './chart';
import { chartSvg } from './chart-svg';
import { isLoopback } from './config';
import type { Logger } from './logger';
import { PACKAGE_ROOT } from './package';
import type { ManagerEvent, StatsEvent } from './protocol';
import type { CommandNote, ManagerSnapshot, Supervisor } from './supervisor';
import type { Sampler } from './sampler';

export interface DashboardOptions {
  /** Must be a loopback address: the page has no authentication. */
  host: string;
  port: number;
  /** What the page calls this manager (its `host:port`). */
  title: string;
  supervisor: Pick<Supervisor, 'on' | 'snapshot'>;
  sampler: Pick<Sampler, 'on'>;
  logger: Logger;
  /** A client that leaves this many bytes unread is dropped. */
  maxUnread?: number;
}

export const DASHBOARD_LIMITS = {
  maxUnread: 4 * 1024 * 1024,
  maxClients: 16,
  /** Host samples kept for a page that joins late. */
  historyMs: 10 * 60_000,
  maxHistory: 1200,
  /** Event log lines kept for a page that joins late. */
  logLines: 300,
} as const;

const FLUSH_MS = 100;

const ASSETS: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
  '/favicon.svg': { file: 'favicon.svg', type: 'image/svg+xml' },
};

const SECURITY_HEADERS = {
  'Content-Security-Policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
};

/** One node as the page shows it: index, pid, phase, the node chart's state it is in. */
type Cell = [number, number | null, NodeView['phase'], string | null];
type HostSample = { time: number; load: number; cpus: number[]; memUsed: number; memTotal: number };
type LogLine = { time: number; kind: string; text: string };

/** `Host` header to host name: `[::1]:7080` -> `::1`, `localhost:9000` -> `localhost`. */
function hostName(header: string | undefined): string {
  if (!header) return '';
  const m = /^\[([^\]]+)\](?::\d+)?$/.exec(header) ?? /^([^:]+)(?::\d+)?$/.exec(header);
  return m ? m[1].toLowerCase() : '';
}

function describeRequest(note: CommandNote): string {
  const r = note.request;
  switch (r.type) {
    case 'generate':
      return `generate ${r.n} (wait ${r.wait})`;
    case 'kill':
      return `kill ${r.index !== undefined ? `index ${r.index}` : `pid ${r.pid}`}`;
    default:
      return r.type;
  }
}

function describeEvent(ev: ManagerEvent): LogLine | null {
  const time = Date.now();
  if (ev.event === 'node') {
    const end = ev.state === 'killed' ? (ev.signal ? ` (${ev.signal})` : ` (exit ${ev.exitCode})`) : '';
    return { time, kind: `node ${ev.state}`, text: `gen ${ev.generation} node ${ev.index} pid ${ev.pid} ${ev.state}${end}` };
  }
  if (ev.event === 'ready') return { time, kind: 'ready', text: `gen ${ev.generation}: ${ev.n} nodes connected` };
  return null;
}

export class Dashboard {
  private readonly server: http.Server;
  private readonly assets = new Map<string, { body: Buffer; type: string }>();
  private readonly charts: { manager: { model: ChartModel; svg: string }; node: { model: ChartModel; svg: string } };
  private readonly clients = new Set<http.ServerResponse>();
  private readonly sockets = new Set<net.Socket>();
  private readonly maxUnread: number;
  // What the page is told, kept for pages that join later.
  private managerActive: string[] = [];
  private generation = -1;
  private views: readonly NodeView[] = [];
  private cells: Cell[] = [];
  /** Indexes of the cells changed since the last batch; `fresh`: a new generation began. */
  private readonly changed = new Set<number>();
  private fresh = true;
  private counts: Record<string, number> = {};
  private history: HostSample[] = [];
  private lastStats: StatsEvent | null = null;
  private log: LogLine[] = [];
  private pendingLog: LogLine[] = [];
  private flushTimer: NodeJS.Timeout | null = null;
  private readonly errors = new Set<string>();

  constructor(private readonly opts: DashboardOptions) {
    if (!isLoopback(opts.host)) {
      throw new Error(`the dashboard listens on loopback only (it has no authentication), not on ${opts.host}; reach it from elsewhere through ssh -L`);
    }
    this.maxUnread = opts.maxUnread ?? DASHBOARD_LIMITS.maxUnread;
    for (const [route, { file, type }] of Object.entries(ASSETS)) {
      this.assets.set(route, { body: readFileSync(path.join(PACKAGE_ROOT, 'dashboard', file)), type });
    }
    const chart = (m: typeof managerMachine | typeof nodeMachine) => {
      const model = chartModel(m);
      return { model, svg: chartSvg(model) };
    };
    this.charts = { manager: chart(managerMachine), node: chart(nodeMachine) };
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    opts.supervisor.on('snapshot', this.guard((s) => this.onSnapshot(s)));
    opts.supervisor.on(
      'event',
      this.guard((ev) => {
        const line = describeEvent(ev);
        if (line) this.addLog(line);
      }),
    );
    opts.supervisor.on('command', this.guard((note) => this.onCommand(note)));
    opts.sampler.on('sample', this.guard((ev) => this.onSample(ev)));
    this.onSnapshot(opts.supervisor.snapshot());
  }

  /** Resolves with the page's URL; rejects (EADDRINUSE...) without side effects. */
  listen(): Promise<string> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: this.opts.host, port: this.opts.port, exclusive: true }, () => {
        this.server.off('error', reject);
        const { address, port } = this.server.address() as net.AddressInfo;
        this.server.on('error', (err) => this.opts.logger.error(`dashboard listener error: ${err.message}`));
        resolve(`http://${address.includes(':') ? `[${address}]` : address}:${port}/`);
      });
    });
  }

  close(): Promise<void> {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  /**
   * The listeners run inside the manager chart's transitions: a bug here must not
   * become a fault of the chart (which would kill every node). Logged once per message.
   */
  private guard<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void {
    return (...args) => {
      try {
        fn(...args);
      } catch (err) {
        const message = (err as Error)?.stack ?? String(err);
        if (this.errors.has(message) || this.errors.size >= 10) return;
        this.errors.add(message);
        this.opts.logger.error(`dashboard: internal error, the page may be out of date (the manager is not affected): ${message}`);
      }
    };
  }

  /** Open event streams (for tests and the log). */
  get clientCount(): number {
    return this.clients.size;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    // A page on another site that resolves its own name to 127.0.0.1 (DNS rebinding) sends its own Host.
    const name = hostName(req.headers.host);
    if (name !== 'localhost' && !isLoopback(name)) {
      res.writeHead(403, { 'Content-Type': 'text/plain; charset=utf-8', ...SECURITY_HEADERS });
      res.end(`herd dashboard: answers only to a loopback host name (localhost, 127.0.0.1, [::1]), not "${req.headers.host ?? ''}"\n`);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8', ...SECURITY_HEADERS });
      res.end('herd dashboard: read-only\n');
      return;
    }
    const route = (req.url ?? '/').split('?')[0];
    if (route === '/events') return this.openStream(req, res);
    const asset = this.assets.get(route);
    if (!asset) {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8', ...SECURITY_HEADERS });
      res.end('not found\n');
      return;
    }
    res.writeHead(200, { 'Content-Type': asset.type, 'Content-Length': asset.body.length, ...SECURITY_HEADERS });
    res.end(req.method === 'HEAD' ? undefined : asset.body);
  }

  private openStream(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (this.clients.size >= DASHBOARD_LIMITS.maxClients) {
      res.writeHead(503, { 'Content-Type': 'text/plain; charset=utf-8', 'Retry-After': '10', ...SECURITY_HEADERS });
      res.end(`herd dashboard: ${DASHBOARD_LIMITS.maxClients} pages are open already\n`);
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', Connection: 'keep-alive', ...SECURITY_HEADERS });
    req.socket.setNoDelay(true);
    // The others get what is pending first, so that this page starts from the same point.
    this.flush();
    this.clients.add(res);
    res.on('close', () => this.clients.delete(res));
    this.write(res, this.frame('init', {
      title: this.opts.title,
      charts: this.charts,
      manager: this.managerActive,
      generation: this.generation,
      nodes: this.cells,
      counts: this.counts,
      history: this.history,
      stats: this.lastStats && this.statsMessage(this.lastStats),
      log: this.log,
    }));
  }

  private frame(name: string, data: unknown): string {
    return `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
  }

  private write(res: http.ServerResponse, chunk: string): void {
    if (res.destroyed) return;
    res.write(chunk);
    if (res.writableLength > this.maxUnread) {
      this.opts.logger.warn(`dashboard: dropping a page at ${res.socket?.remoteAddress ?? '?'}:${res.socket?.remotePort ?? '?'} that left ${res.writableLength} bytes unread (limit ${this.maxUnread}); it gets a fresh start when it reconnects`);
      this.clients.delete(res);
      res.destroy();
    }
  }

  private broadcast(name: string, data: unknown): void {
    if (this.clients.size === 0) return;
    const chunk = this.frame(name, data);
    for (const res of [...this.clients]) this.write(res, chunk);
  }

  private addLog(line: LogLine): void {
    this.log.push(line);
    if (this.log.length > DASHBOARD_LIMITS.logLines) this.log.splice(0, this.log.length - DASHBOARD_LIMITS.logLines);
    if (this.clients.size === 0) return;
    this.pendingLog.push(line);
    this.schedule();
  }

  private schedule(): void {
    if (this.flushTimer || this.clients.size === 0) return;
    this.flushTimer = setTimeout(() => this.flush(), FLUSH_MS);
    this.flushTimer.unref();
  }

  private onSnapshot(snapshot: ManagerSnapshot): void {
    const active = activeStateIds(managerMachine.id, snapshot.value);
    if (active.join() !== this.managerActive.join()) {
      this.managerActive = active;
      this.addLog({ time: Date.now(), kind: 'manager', text: `manager ${active[active.length - 1].slice(managerMachine.id.length + 1)}` });
      this.broadcast('manager', { active, generation: snapshot.context.generation });
    }
    this.track(snapshot);
    this.schedule();
  }

  private onCommand(note: CommandNote): void {
    const what = describeRequest(note);
    const { reply } = note;
    if (!reply) return this.addLog({ time: Date.now(), kind: 'command', text: `${what}: accepted` });
    const text = 'error' in reply ? `${what}: ${reply.error.code}: ${reply.error.message}` : `${what}: answered ok`;
    this.addLog({ time: Date.now(), kind: 'error' in reply ? 'error' : 'answer', text });
  }

  private onSample(ev: StatsEvent): void {
    const { cpus, load, memUsed, memTotal } = ev.host;
    this.history.push({ time: ev.time, load, cpus, memUsed, memTotal });
    const cutoff = ev.time - DASHBOARD_LIMITS.historyMs;
    let drop = 0;
    while (drop < this.history.length && (this.history[drop].time < cutoff || this.history.length - drop > DASHBOARD_LIMITS.maxHistory)) drop++;
    if (drop > 0) this.history.splice(0, drop);
    this.lastStats = ev;
    this.broadcast('stats', this.statsMessage(ev));
  }

  private statsMessage(ev: StatsEvent) {
    const { cpus, load, memUsed, memTotal } = ev.host;
    return { time: ev.time, host: { cpus, load, memUsed, memTotal }, nodes: ev.nodes.map((n) => [n.index, n.pid, n.cpu, n.rss]) };
  }

  /**
   * Notes which nodes changed: the manager replaces a node's view on every change of
   * its state, so comparing references finds them. Nodes that a reset drops keep
   * their last cell (killed) until the next generation replaces them.
   */
  private track(snapshot: ManagerSnapshot): void {
    const { nodes, generation } = snapshot.context;
    if (generation !== this.generation) {
      this.generation = generation;
      this.views = [];
      this.cells = [];
      this.changed.clear();
      this.fresh = true;
    }
    for (let i = 0; i < nodes.length; i++) {
      const v = nodes[i];
      if (v === this.views[i]) continue;
      const child = snapshot.children[`n${i}`]?.getSnapshot();
      const ids = child && 'value' in child ? activeStateIds(nodeMachine.id, child.value) : [];
      this.cells[i] = [i, v.pid, v.phase, ids.length > 0 ? ids[ids.length - 1] : null];
      this.changed.add(i);
    }
    // The chart replaces the array on every change (it is never mutated): keeping it is enough.
    this.views = nodes;
  }

  /** Sends what changed since the last batch: node cells, node-chart counts, log lines. */
  private flush(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    if (this.changed.size > 0 || this.fresh) {
      const counts: Record<string, number> = {};
      for (const c of this.cells) if (c[3]) counts[c[3]] = (counts[c[3]] ?? 0) + 1;
      this.counts = counts;
      const changes = [...this.changed].sort((a, b) => a - b).map((i) => this.cells[i]);
      this.broadcast('nodes', { generation: this.generation, count: this.cells.length, fresh: this.fresh, changes, counts });
      this.changed.clear();
      this.fresh = false;
    }
    if (this.pendingLog.length > 0) {
      this.broadcast('log', this.pendingLog);
      this.pendingLog = [];
    }
  }
}
