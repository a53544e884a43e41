// `herd top` and the human form of `herd stats`: host CPU, load and memory, and the
// nodes sorted by CPU, per manager. `top` subscribes to `stats` events. On a terminal
// it redraws one screen in place (the alternate screen, plain ANSI: no dependency)
// until q or Ctrl-C, then restores the terminal; elsewhere it prints one block per
// sample (or, with --json, one JSON object per sample).

import { ConnectOptions, HerdClient, HerdError } from './client';
import { asHerdError } from './fleet';
import type { StatsResult } from './protocol';
import { bytes, percent, table, toJson } from './table';
import type { Target } from './targets';

/**
 * The host's figures: the contract's, then herd's additions when the manager sends
 * them. The per-core figures come second, on the same line or (`coresApart`, for a
 * screen that cuts long lines) on a line of their own.
 */
function hostLines(s: StatsResult, coresApart: boolean): string[] {
  const h = s.host;
  const parts = [];
  if (s.generation !== undefined) parts.push(`gen ${s.generation}`);
  parts.push(`cpu ${percent(h.load)}${h.steal !== undefined ? ` (steal ${percent(h.steal)}, iowait ${percent(h.iowait)})` : ''}`);
  const cores = `cores ${h.cpus.map((p) => percent(p)).join(' ')}`;
  if (!coresApart) parts.push(cores);
  if (h.loadavg !== undefined) parts.push(`load ${h.loadavg.map((x) => x.toFixed(2)).join(' ')}`);
  parts.push(`mem ${bytes(h.memUsed)} / ${bytes(h.memTotal)}`);
  return coresApart ? [parts.join('  '), `  ${cores}`] : [parts.join('  ')];
}

/**
 * The host line(s), then the nodes by CPU (highest first), at most `limit` of
 * them (the rest summed up in one line).
 */
export function statsLines(s: StatsResult, limit = Infinity, coresApart = false): string[] {
  const head = hostLines(s, coresApart);
  if (s.nodes.length === 0) return head;
  const sorted = [...s.nodes].sort((a, b) => b.cpu - a.cpu || a.index - b.index);
  const shown = sorted.slice(0, Math.max(0, limit));
  const lines = [...head];
  if (shown.length > 0) lines.push(...table(['INDEX', 'PID', 'CPU%', 'RSS'], shown.map((n) => [n.index, n.pid, n.cpu.toFixed(1), bytes(n.rss)]), '  '));
  const rest = sorted.slice(shown.length);
  if (rest.length > 0) {
    const cpu = rest.reduce((sum, n) => sum + n.cpu, 0);
    const rss = rest.reduce((sum, n) => sum + n.rss, 0);
    lines.push(`  ... ${rest.length} more node(s): cpu ${percent(cpu)} rss ${bytes(rss)} in all`);
  }
  return lines;
}

/** What `top` knows of one manager. */
interface HostView {
  address: string;
  stats: StatsResult | null;
  time: number | null;
  error: string | null;
}

/** One screen: a title line, then each host's block, the nodes cut to fit `rows` lines (and `limit`). */
function renderScreen(hosts: HostView[], rows: number, limit = Infinity): string[] {
  const title = `herd top  ${new Date().toTimeString().slice(0, 8)}  ${hosts.length} manager(s)  sorted by CPU  q: quit`;
  const lines = [title];
  // Each host gets an equal share of the rows below the title: a blank line, its two
  // host lines, a table header, its nodes (and a summary line when they are cut).
  const share = Math.max(4, Math.floor((rows - 1) / hosts.length) - 1);
  for (const h of hosts) {
    lines.push('');
    if (h.error !== null) lines.push(`${h.address}  ${h.error}`);
    else if (h.stats === null) lines.push(`${h.address}  waiting for the first sample`);
    else {
      const fits = h.stats.nodes.length <= share - 3 ? share - 3 : share - 4;
      const [head, ...rest] = statsLines(h.stats, Math.min(fits, limit), true);
      lines.push(`${h.address}  ${head}`, ...rest);
    }
  }
  return lines;
}

/** One block per sample, for a non-terminal. */
function block(h: HostView, limit: number): string[] {
  const at = new Date(h.time ?? Date.now()).toISOString().slice(11, 23);
  const [head, ...rest] = statsLines(h.stats!, limit);
  return [`${at}  ${h.address}  ${head}`, ...rest, ''];
}

export interface TopOptions {
  json: boolean;
  /** Nodes shown per host at most; on a terminal, also no more than fit. */
  limit?: number;
  out?: NodeJS.WriteStream;
  input?: NodeJS.ReadStream;
}

const ALT_SCREEN_ON = '\x1b[?1049h\x1b[?25l';
const ALT_SCREEN_OFF = '\x1b[?25h\x1b[?1049l';
/** How long a new sample waits for the other hosts' before the screen is redrawn. */
const REDRAW_DELAY_MS = 50;

/** Runs until q, Ctrl-C or SIGTERM (exit 0), or until no manager is left (exit 1). */
export async function top(targets: Target[], conn: ConnectOptions, opts: TopOptions): Promise<number> {
  const out = opts.out ?? process.stdout;
  const input = opts.input ?? process.stdin;
  const live = out.isTTY === true && !opts.json;
  const hosts: HostView[] = targets.map((t) => ({ address: t.address, stats: null, time: null, error: null }));
  const clients = new Set<HerdClient>();
  let stopping = false;
  let done!: (code: number) => void;
  const finished = new Promise<number>((resolve) => (done = resolve));

  const draw = () => {
    if (stopping) return;
    const rows = out.rows ?? 24;
    const cols = out.columns ?? 80;
    const screen = renderScreen(hosts, rows, opts.limit).slice(0, rows);
    // Home, then each line cut to the width and cleared to its end, then clear below.
    out.write(`\x1b[H${screen.map((l) => `${l.slice(0, cols)}\x1b[K`).join('\n')}\x1b[J`);
  };
  // Samples of many hosts arrive within moments of each other each second: one
  // redraw for all of them (each redraw sorts every node of every host).
  let redraw: NodeJS.Timeout | null = null;
  const drawSoon = () => {
    redraw ??= setTimeout(() => {
      redraw = null;
      draw();
    }, REDRAW_DELAY_MS);
  };
  /** Shows a new sample, or a host's failure. */
  const show = (h: HostView, json: object) => {
    if (live) return drawSoon();
    // A block ends with an empty line; so does a failure.
    const text = h.error !== null ? `${h.address}  ${h.error}\n\n` : `${block(h, opts.limit ?? Infinity).join('\n')}\n`;
    out.write(opts.json ? `${toJson({ manager: h.address, ...json })}\n` : text);
  };
  const lost = () => {
    if (!stopping && hosts.every((h) => h.error !== null)) stop(1);
  };
  const onKey = (key: Buffer) => {
    // q, Q, Ctrl-C (raw mode turns it into a byte, not a signal), Ctrl-D.
    if (key.includes(0x71) || key.includes(0x51) || key.includes(0x03) || key.includes(0x04)) stop(0);
  };
  const onSignal = () => stop(0);
  const onResize = () => draw();
  function stop(code: number): void {
    if (stopping) return;
    stopping = true;
    if (redraw) clearTimeout(redraw);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (live) {
      out.off('resize', onResize);
      input.off('data', onKey);
      if (input.isTTY) input.setRawMode(false);
      input.pause();
      out.write(ALT_SCREEN_OFF);
      // What the screen showed stays readable after it is left.
      out.write(`${renderScreen(hosts, out.rows ?? 24, opts.limit).join('\n')}\n`);
    }
    void Promise.all([...clients].map((c) => c.close())).then(() => done(code));
  }

  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  if (live) {
    out.write(ALT_SCREEN_ON);
    out.on('resize', onResize);
    if (input.isTTY) input.setRawMode(true);
    input.on('data', onKey);
    input.resume();
    draw();
  }

  await Promise.all(
    targets.map(async ({ address }, i) => {
      const h = hosts[i];
      const fail = (err: unknown) => {
        if (h.error !== null || stopping) return; // already reported (a lost connection fails its request too)
        const e = asHerdError(err);
        h.error = `error ${e.code}: ${e.message}`;
        show(h, { error: { code: e.code, message: e.message } });
        lost();
      };
      let client: HerdClient;
      try {
        client = await HerdClient.connect(address, conn);
      } catch (err) {
        return fail(err);
      }
      if (stopping) return void client.close();
      clients.add(client);
      client.on('close', (err) => {
        clients.delete(client);
        fail(err ?? new HerdError('CLOSED', 'connection closed by manager'));
      });
      client.on('event', (ev) => {
        if (ev.event !== 'stats') return;
        const { event: _event, time, ...stats } = ev;
        Object.assign(h, { stats, time, error: null });
        show(h, ev);
      });
      try {
        // On a terminal, the last sample at once; then every new one.
        if (live) {
          const first = await client.stats();
          if (h.stats === null) Object.assign(h, { stats: first, time: Date.now() });
          draw();
        }
        await client.subscribe(['stats']);
      } catch (err) {
        fail(err);
      }
    }),
  );
  return finished;
}
