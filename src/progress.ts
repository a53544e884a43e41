// Progress on stderr (stdout keeps only the results).
//
// GenerateProgress: `herd generate`, from the `node` events of each manager: how
// many nodes have started and connected, out of N, per host. On a terminal it is
// one line per host redrawn in place; elsewhere (a log, CI) a plain line per host
// when its counts change, at most once a second.
//
// FanoutProgress: any other fan-out over hosts (status, reset, up, ...): one line
// on a terminal, how many hosts have answered, once it has taken half a second.

import type { NodeEvent, WaitMode } from './protocol';
import { duration, plural } from './table';

interface HostCounts {
  /** Nodes asked of this host. */
  n: number;
  /** The generation being counted: the newest one seen starting. */
  generation: number;
  spawned: Set<number>;
  connected: Set<number>;
  exited: Set<number>;
  spawnedAt: number | null;
  connectedAt: number | null;
  /** The host answered: 'done' (ok) or 'failed' (its error is in the results). */
  end: 'done' | 'failed' | null;
  /** What the last plain line said (non-TTY): a line is written only on change. */
  printed: string;
}

const REDRAW_MS = 100;
const PLAIN_MS = 1000;

export class GenerateProgress {
  private readonly hosts = new Map<string, HostCounts>();
  private readonly width: number;
  private readonly started = Date.now();
  private timer: NodeJS.Timeout | null = null;
  /** Lines of the block last drawn on the terminal (to move back over them). */
  private drawn = 0;

  constructor(
    private readonly stream: NodeJS.WritableStream & { isTTY?: boolean },
    addresses: string[],
    /** Nodes per host: one number for all, or one per address (a `--total` spread by weight). */
    n: number | number[],
    private readonly wait: WaitMode,
  ) {
    this.width = Math.max(...addresses.map((a) => a.length));
    for (const [i, a] of addresses.entries()) {
      this.hosts.set(a, { n: typeof n === 'number' ? n : n[i], generation: -1, spawned: new Set(), connected: new Set(), exited: new Set(), spawnedAt: null, connectedAt: null, end: null, printed: '' });
    }
    this.timer = setInterval(() => this.render(), this.stream.isTTY ? REDRAW_MS : PLAIN_MS);
    this.timer.unref();
  }

  /** A `node` event from `address`. Only `spawning` opens a generation: the reset's `killed` events belong to the old one. */
  node(address: string, ev: NodeEvent): void {
    const h = this.hosts.get(address);
    if (!h) return;
    if (ev.state === 'spawning' && ev.generation > h.generation) {
      Object.assign(h, { generation: ev.generation, spawnedAt: null, connectedAt: null });
      for (const s of [h.spawned, h.connected, h.exited]) s.clear();
    }
    if (ev.generation !== h.generation) return;
    h.spawned.add(ev.index);
    if (ev.state === 'running') h.connected.add(ev.index);
    if (ev.state === 'killed') h.exited.add(ev.index);
    const now = Date.now();
    if (h.spawnedAt === null && h.spawned.size >= h.n) h.spawnedAt = now;
    if (h.connectedAt === null && h.connected.size >= h.n) h.connectedAt = now;
  }

  /** Nodes seen started and connected on `address` in the generation being counted. */
  counts(address: string): { spawned: number; connected: number } | undefined {
    const h = this.hosts.get(address);
    return h && { spawned: h.spawned.size, connected: h.connected.size };
  }

  /** The host answered, or failed: its line stops changing. */
  done(address: string, ok: boolean): void {
    const h = this.hosts.get(address);
    if (h) h.end = ok ? 'done' : 'failed';
  }

  /** Stops redrawing and leaves the terminal clean for the results; returns the summary line (none if every host failed). */
  finish(): string | null {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.stream.isTTY) this.erase();
    else this.render();
    const all = [...this.hosts.values()];
    const hosts = all.filter((h) => h.end !== 'failed');
    if (hosts.length === 0) return null;
    const total = (pick: (h: HostCounts) => Set<number>) => hosts.reduce((sum, h) => sum + pick(h).size, 0);
    /** " in 1.2s" once every host got there. */
    const when = (pick: (h: HostCounts) => number | null) => {
      const times = hosts.map(pick);
      return times.every((t) => t !== null) ? ` in ${duration(Math.max(...(times as number[])) - this.started)}` : '';
    };
    const target = hosts.reduce((sum, h) => sum + h.n, 0);
    const parts = [`spawned ${total((h) => h.spawned)}/${target}${when((h) => h.spawnedAt)}`];
    if (this.wait === 'connected') parts.push(`connected ${total((h) => h.connected)}/${target}${when((h) => h.connectedAt)}`);
    const exited = total((h) => h.exited);
    if (exited > 0) parts.push(`exited ${exited}`);
    const failed = all.length - hosts.length;
    // Counts of the managers that succeeded only: say so when some did not.
    const who = all.length === 1 ? '' : failed > 0 ? `${hosts.length} of ${all.length} managers ok: ` : `${plural(hosts.length, 'manager')}: `;
    return `${who}${parts.join(', ')} (${duration(Date.now() - this.started)} in all)`;
  }

  private line(address: string, h: HostCounts): string {
    const parts = [`spawned ${String(h.spawned.size).padStart(String(h.n).length)}/${h.n}`];
    if (this.wait === 'connected') parts.push(`connected ${String(h.connected.size).padStart(String(h.n).length)}/${h.n}`);
    if (h.exited.size > 0) parts.push(`exited ${h.exited.size}`);
    return `${address.padEnd(this.width)}  ${parts.join('  ')}${h.end ? `  ${h.end}` : ''}`;
  }

  private render(): void {
    const elapsed = duration(Date.now() - this.started);
    if (!this.stream.isTTY) {
      for (const [address, h] of this.hosts) {
        const text = this.line(address, h);
        if (text === h.printed) continue;
        h.printed = text;
        this.stream.write(`${text}  (${elapsed})\n`);
      }
      return;
    }
    this.erase();
    const lines = [...this.hosts].map(([address, h]) => `${this.line(address, h)}  ${elapsed}`);
    this.stream.write(lines.map((l) => `${l}\n`).join(''));
    this.drawn = lines.length;
  }

  /** Moves up over the block drawn last and clears it (ANSI: cursor previous line, erase below). */
  private erase(): void {
    if (this.drawn > 0) this.stream.write(`\x1b[${this.drawn}F\x1b[J`);
    this.drawn = 0;
  }
}

/** Quiet this long first: most fan-outs are over before a line would be worth drawing. */
const FANOUT_DELAY_MS = 500;

export class FanoutProgress {
  private readonly started = Date.now();
  private readonly timer: NodeJS.Timeout | null = null;
  private answered = 0;
  private failed = 0;
  private drawn = false;

  /** Draws only on a terminal; elsewhere every method does nothing. */
  constructor(
    private readonly stream: NodeJS.WritableStream & { isTTY?: boolean },
    private readonly label: string,
    private readonly total: number,
  ) {
    if (!stream.isTTY) return;
    this.timer = setInterval(() => Date.now() - this.started >= FANOUT_DELAY_MS && this.draw(), REDRAW_MS);
    this.timer.unref();
  }

  /** A host answered (`ok`) or failed (an error, unreachable, timed out). */
  host(ok: boolean): void {
    this.answered++;
    if (!ok) this.failed++;
  }

  /** Stops and clears the line, leaving the terminal clean for the results. */
  finish(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.drawn) this.stream.write('\r\x1b[2K');
  }

  private draw(): void {
    const failed = this.failed > 0 ? ` (${this.failed} not ok)` : '';
    const waiting = this.total - this.answered;
    this.stream.write(`\r\x1b[2K${this.label}: ${this.answered}/${this.total} hosts answered${failed}, waiting for ${waiting}  ${duration(Date.now() - this.started)}`);
    this.drawn = true;
  }
}
