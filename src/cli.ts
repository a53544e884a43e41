#!/usr/bin/env node
// The `herd` command. `herd manager` runs the per-host daemon; every other
// subcommand is a controller: it sends one command to each listed manager
// concurrently and reports per host (exit 0 all ok, 1 any failed, 2 usage).

import { once } from 'node:events';
import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { parseArgs, ParseArgsConfig } from 'node:util';
import { ConnectOptions, HerdClient, HerdError } from './client';
import { FollowOptions, followLogs } from './followlogs';
import { EXPORT_VIEWS, exportTimeline, ExportOptions, ExportView } from './export';
import { GenerateProgress } from './progress';
import { CommandResults, KillParams, ManagerEvent, NodeInfo, Topic, TOPICS, WAIT_MODES, WaitMode } from './protocol';
import { bytes, duration, percent, ranges, table, toJson } from './table';
import { parseAddress, readTokenFile, resolveTargets, Target, TargetError } from './targets';
import { statsLines, top } from './top';

const USAGE = `usage: herd <command> [options]

Per-host daemon:
  herd manager [--host ADDR] [--port N] [--node-command PATH] [--node-arg ARG]...
               [--interface-port N] [--token-file FILE] [--log-dir DIR]
               [--max-frame BYTES] [--max-nodes N] [--kill-grace-ms MS]
               [--stats-interval-ms MS] [--node-log-max-bytes BYTES] [--state-dir DIR]
               [--insecure] [--dashboard [[HOST:]PORT]] [--inspect]
                               (herd manager --help for details)

Docs:
  herd chart [--format mermaid|dot|svg] [--machine manager|node]
                               print the statecharts, drawn from their definitions

Controller commands:
  herd generate N [--wait spawned|connected] [--timeout MS] [--interface HOST:PORT]
                               reset, then start N fresh nodes on every manager
                               (progress per host on stderr unless --json)
  herd status [--tail]         current generation and its nodes; the last lines of
                               nodes that failed (--tail: of every node that exited)
  herd reset                   kill every node
  herd kill --pid P | --index I
                               kill one node
  herd stats                   host CPU (steal, iowait), load and memory, per-node CPU and RSS
  herd top [--limit N]         the same, live, nodes sorted by CPU, until q or Ctrl-C
                               (not on a terminal: one block per sample)
  herd export [--csv|--jsonl] [--what nodes|host|events] [--generation G] [--out FILE]
                               a generation's timeline from every manager, as CSV
                               (default: per-node samples) or JSONL
  herd watch [--topics nodes,stats]
                               print events as they come, until Ctrl-C
  herd ping                    check that the managers answer
  herd logs INDEX [--follow] [--generation G] [--bytes N]
                               a node's output (stdout and stderr), from one manager;
                               --follow keeps printing until the node has exited

Options of every controller command:
  --manager HOST:PORT    a manager to talk to (repeatable; [v6]:port for IPv6;
                         default 127.0.0.1:7070)
  --hosts FILE           managers listed one host[:port] per line, # comments
  --token-file FILE      send the token in FILE (hello) before the command
                         (default: $HERD_TOKEN_FILE)
  --connect-timeout MS   give up on an unreachable manager after MS (default 5000)
  --json                 machine output: {"host:port": result or {"error": {code, message}}}
                         (watch: one JSON object per line)
  -h, --help             this help

Exit status: 0 if every manager succeeded, 1 if any failed, 2 for usage errors.`;

const COMMON = {
  manager: { type: 'string', multiple: true },
  hosts: { type: 'string' },
  'token-file': { type: 'string' },
  'connect-timeout': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

type Values = Record<string, string | boolean | string[] | undefined>;

class UsageError extends Error {}

const out = (line = '') => process.stdout.write(`${line}\n`);

function uint(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw new UsageError(`${name} must be a non-negative integer, got "${text}"`);
  return Number(text);
}

/** The result a host produced, or why it could not. */
type Outcome<T> = { address: string; result: T; error?: undefined } | { address: string; error: HerdError };

function asHerdError(err: unknown): HerdError {
  return err instanceof HerdError ? err : new HerdError('INTERNAL', (err as Error)?.message ?? String(err));
}

function errorJson(e: HerdError) {
  return { code: e.code, message: e.message, ...(e.details !== undefined ? { details: e.details } : {}) };
}

function errorText(e: HerdError): string {
  const hint = e.code === 'UNAUTHENTICATED' ? ' (herd: give the manager\'s token with --token-file FILE or $HERD_TOKEN_FILE)' : '';
  return `error ${e.code}: ${e.message}${e.details !== undefined ? ` ${toJson(e.details)}` : ''}${hint}`;
}

/** Runs `fn` against every target concurrently; one host's failure never holds up another. */
function onEach<T>(targets: Target[], conn: ConnectOptions, fn: (c: HerdClient, address: string) => Promise<T>): Promise<Outcome<T>[]> {
  return Promise.all(
    targets.map(async ({ address }): Promise<Outcome<T>> => {
      let client: HerdClient | undefined;
      try {
        client = await HerdClient.connect(address, conn);
        return { address, result: await fn(client, address) };
      } catch (err) {
        return { address, error: asHerdError(err) };
      } finally {
        await client?.close();
      }
    }),
  );
}

// ---- human output, per command ----------------------------------------------

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** Nodes that failed, shown by default with their last lines under their row; more get one note. */
const TAIL_NODES = 10;
const TAIL_LINES_SHOWN = 3;

/** A node's output line made safe for a terminal: control characters (escape sequences) become '?'. */
const printable = (line: string) => line.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, '?');

/**
 * Under each row, the last lines of a node that exited on its own: by default only
 * for nodes that failed (non-zero exit or a signal), at most TAIL_NODES of them and
 * TAIL_LINES_SHOWN lines each; with `all`, every line kept of every node that has them.
 */
function tailLines(n: NodeInfo, all: boolean, shown: { nodes: number; more: number }): string[] {
  const failed = n.exitCode !== 0 || (n.signal ?? null) !== null;
  if (!n.tail || n.tail.length === 0 || (!all && !failed)) return [];
  if (!all && shown.nodes >= TAIL_NODES) {
    shown.more++;
    return [];
  }
  shown.nodes++;
  return (all ? n.tail : n.tail.slice(-TAIL_LINES_SHOWN)).map((l) => `           | ${printable(l)}`);
}

function showStatus(s: CommandResults['status'], allTails = false): string[] {
  const c = s.counts;
  const head = `state ${s.state}  generation ${s.generation}  target ${s.target}  spawning ${c.spawning}  running ${c.running}  killed ${c.killed}`;
  if (s.nodes.length === 0) return [head, ...showFailed(s.failed ?? [])];
  const now = Date.now();
  const withId = s.nodes.some((n) => n.nodeId !== undefined && n.nodeId !== null);
  const nodes = [...s.nodes].sort((a, b) => a.index - b.index);
  const rows = nodes.map((n: NodeInfo) => [
    n.index,
    n.pid,
    n.state,
    // Manager clocks may run a little ahead of ours: never show negative ages.
    n.state === 'killed' ? '-' : duration(Math.max(0, now - Number(n.startedAt))),
    n.connectedAt != null ? `+${duration(Math.max(0, Number(n.connectedAt) - Number(n.startedAt)))}` : '-',
    n.state !== 'killed' ? '-' : (n.signal ?? (n.exitCode != null ? String(n.exitCode) : '?')),
    ...(withId ? [typeof n.nodeId === 'string' ? n.nodeId : toJson(n.nodeId ?? null)] : []),
  ]);
  const [header, ...lines] = table(['INDEX', 'PID', 'STATE', 'UPTIME', 'CONNECTED', 'EXIT', ...(withId ? ['NODE-ID'] : [])], rows, '  ');
  const shown = { nodes: 0, more: 0 };
  const body = lines.flatMap((line, i) => [line, ...tailLines(nodes[i], allTails, shown)]);
  const more = shown.more > 0 ? [`  ... last lines of ${plural(shown.more, 'more failed node')} not shown: herd status --tail, or herd logs INDEX`] : [];
  return [head, header, ...body, ...more, ...showFailed(s.failed ?? [])];
}

/** Nodes the OS refused to start (herd's addition to status), a few lines at most. */
function showFailed(failed: CommandResults['status']['failed']): string[] {
  if (failed.length === 0) return [];
  const shown = failed.slice(0, 5).map((f) => `failed  index ${f.index}  ${f.code}: ${f.message}`);
  return failed.length > 5 ? [...shown, `failed  ... and ${failed.length - 5} more (--json lists all)`] : shown;
}

function showGenerate(r: CommandResults['generate'], wait: WaitMode): string[] {
  const nodes = [...r.nodes].sort((a, b) => a.index - b.index);
  const pids = nodes.length > 0 ? `  pids ${ranges(nodes.map((n) => n.pid))}` : '';
  return [`generation ${r.generation}: ${plural(nodes.length, 'node')} ${wait}${pids}`];
}

function showReset(r: CommandResults['reset']): string[] {
  // The contract guarantees only `killed`; outcomes and strays are herd's additions.
  let line = `killed ${r.killed}`;
  if (r.outcomes) line += `  (terminated ${r.outcomes.terminated}, killed after grace ${r.outcomes.killed}, had exited ${r.outcomes.exited})`;
  const strays = r.strays ? r.strays.cgroup + r.strays.sweep : 0;
  if (strays > 0) line += `  strays killed ${strays} (cgroup ${r.strays.cgroup}, run-id sweep ${r.strays.sweep})`;
  return [line];
}

function showKill(r: CommandResults['kill']): string[] {
  return [`killed pid ${r.pid}  ${r.signal ? `signal ${r.signal}` : `exit ${r.exitCode ?? '?'}`}`];
}

function showEvent(ev: ManagerEvent): string {
  switch (ev.event) {
    case 'node': {
      const end = ev.state === 'killed' ? (ev.signal ? `  signal ${ev.signal}` : `  exit ${ev.exitCode ?? '?'}`) : '';
      return `node   gen ${ev.generation}  index ${ev.index}  pid ${ev.pid}  ${ev.state}${end}`;
    }
    case 'ready':
      return `ready  gen ${ev.generation}  ${plural(ev.n, 'node')} connected`;
    case 'stats': {
      const cpu = ev.nodes.reduce((sum, n) => sum + n.cpu, 0);
      const rss = ev.nodes.reduce((sum, n) => sum + n.rss, 0);
      return `stats  cpu ${percent(ev.host.load)}  mem ${bytes(ev.host.memUsed)} / ${bytes(ev.host.memTotal)}  ${plural(ev.nodes.length, 'node')}: cpu ${percent(cpu)} rss ${bytes(rss)}`;
    }
    default:
      return `${(ev as { event: string }).event}  ${toJson(ev)}`;
  }
}

/** One line per host (padded so results align), or a section per host for multi-line results. */
function report<T>(outcomes: Outcome<T>[], json: boolean, show: (r: T) => string[]): number {
  if (json) {
    out(toJson(Object.fromEntries(outcomes.map((o) => [o.address, o.error ? { error: errorJson(o.error) } : o.result])), 2));
  } else {
    const width = Math.max(...outcomes.map((o) => o.address.length));
    const sections = outcomes.map((o) => (o.error ? [errorText(o.error)] : show(o.result)));
    const multi = sections.some((s) => s.length > 1);
    sections.forEach((lines, i) => {
      if (multi && i > 0) out();
      out(`${outcomes[i].address.padEnd(width)}  ${lines[0]}`);
      lines.slice(1).forEach((l) => out(l));
    });
  }
  return outcomes.some((o) => o.error) ? 1 : 0;
}

// ---- commands ---------------------------------------------------------------

interface Command {
  usage: string;
  options?: ParseArgsConfig['options'];
  positionals?: number;
  /** Validates flags, then talks to the managers; returns the exit status. */
  run: (values: Values, positionals: string[], targets: Target[], conn: ConnectOptions) => Promise<number>;
}

const simple = <T>(fn: (c: HerdClient) => Promise<T>, show: (r: T) => string[]): Command['run'] =>
  async (values, _p, targets, conn) => report(await onEach(targets, conn, fn), values.json === true, show);

const COMMANDS: Record<string, Command> = {
  generate: {
    usage: 'herd generate N [--wait spawned|connected] [--timeout MS] [--interface HOST:PORT]',
    options: { wait: { type: 'string' }, timeout: { type: 'string' }, interface: { type: 'string' } },
    positionals: 1,
    run: async (values, [nText], targets, conn) => {
      if (nText === undefined) throw new UsageError('generate needs the number of nodes N');
      const n = uint('N', nText)!;
      const wait = (values.wait ?? 'spawned') as WaitMode;
      if (!WAIT_MODES.includes(wait)) throw new UsageError(`--wait must be one of ${WAIT_MODES.join(', ')}, got "${wait}"`);
      const timeoutMs = uint('--timeout', values.timeout as string | undefined);
      const iface = values.interface as string | undefined;
      if (iface !== undefined) {
        try {
          parseAddress(iface, null);
        } catch (err) {
          throw new UsageError(`--interface ${(err as Error).message}`);
        }
      }
      const params = { wait, ...(timeoutMs !== undefined ? { timeoutMs } : {}), ...(iface !== undefined ? { interface: iface } : {}) };
      const json = values.json === true;
      const progress = json ? null : new GenerateProgress(process.stderr, targets.map((t) => t.address), n, wait);
      const outcomes = await onEach(targets, conn, async (c, address) => {
        if (progress) {
          c.on('event', (ev) => ev.event === 'node' && progress.node(address, ev));
          // Progress is a nicety: a manager that refuses the subscription still gets the generate.
          await c.subscribe(['nodes']).catch(() => undefined);
        }
        let ok = false;
        try {
          const r = await c.generate(n, params);
          ok = true;
          return r;
        } finally {
          progress?.done(address, ok);
        }
      });
      const summary = progress?.finish();
      if (summary) process.stderr.write(`${summary}\n`);
      return report(outcomes, json, (r) => showGenerate(r, wait));
    },
  },
  status: {
    usage: 'herd status [--tail]',
    options: { tail: { type: 'boolean' } },
    run: async (values, _p, targets, conn) => simple((c) => c.status(), (r) => showStatus(r, values.tail === true))(values, [], targets, conn),
  },
  stats: { usage: 'herd stats', run: simple((c) => c.stats(), (r) => statsLines(r)) },
  top: {
    usage: 'herd top [--limit N]',
    options: { limit: { type: 'string' } },
    run: (values, _p, targets, conn) => top(targets, conn, { json: values.json === true, limit: uint('--limit', values.limit as string | undefined) }),
  },
  export: {
    usage: 'herd export [--csv|--jsonl] [--what nodes|host|events] [--generation G] [--out FILE]',
    options: { csv: { type: 'boolean' }, jsonl: { type: 'boolean' }, what: { type: 'string' }, generation: { type: 'string' }, out: { type: 'string' } },
    run: (values, _p, targets, conn) => {
      if (values.csv === true && values.jsonl === true) throw new UsageError('choose one of --csv and --jsonl');
      const view = (values.what ?? 'nodes') as ExportView;
      if (!EXPORT_VIEWS.includes(view)) throw new UsageError(`--what must be one of ${EXPORT_VIEWS.join(', ')}, got "${view}"`);
      const generation = uint('--generation', values.generation as string | undefined);
      return exportCommand(targets, conn, { view, format: values.jsonl === true ? 'jsonl' : 'csv', generation }, values.out as string | undefined, values.json === true);
    },
  },
  reset: { usage: 'herd reset', run: simple((c) => c.reset(), showReset) },
  kill: {
    usage: 'herd kill --pid P | --index I',
    options: { pid: { type: 'string' }, index: { type: 'string' } },
    run: async (values, _p, targets, conn) => {
      const pid = uint('--pid', values.pid as string | undefined);
      const index = uint('--index', values.index as string | undefined);
      if ((pid === undefined) === (index === undefined)) throw new UsageError('kill needs exactly one of --pid P or --index I');
      const target: KillParams = pid !== undefined ? { pid } : { index: index! };
      return simple((c) => c.kill(target), showKill)(values, [], targets, conn);
    },
  },
  ping: {
    usage: 'herd ping',
    run: simple(
      async (c) => {
        const t0 = Date.now();
        const r = await c.ping();
        const t1 = Date.now();
        // Manager clock minus ours, taking the reply as stamped halfway through the round trip.
        return { ...r, rttMs: t1 - t0, offsetMs: Number(r.time) - Math.round((t0 + t1) / 2) };
      },
      (r) => [`pong  rtt ${r.rttMs}ms  clock offset ${r.offsetMs >= 0 ? '+' : ''}${r.offsetMs}ms`],
    ),
  },
  logs: {
    usage: 'herd logs INDEX [--follow] [--generation G] [--bytes N]',
    options: { follow: { type: 'boolean', short: 'f' }, generation: { type: 'string' }, bytes: { type: 'string' } },
    positionals: 1,
    run: async (values, [indexText], targets, conn) => {
      if (indexText === undefined) throw new UsageError('logs needs the INDEX of a node');
      // Indexes are per manager: the output of one node comes from one.
      if (targets.length !== 1) throw new UsageError(`logs reads one node of one manager; name exactly one with --manager (got ${targets.length})`);
      return logs(targets[0].address, conn, values, {
        index: uint('INDEX', indexText)!,
        generation: uint('--generation', values.generation as string | undefined),
        bytes: uint('--bytes', values.bytes as string | undefined) ?? LOG_BYTES,
        follow: values.follow === true,
      });
    },
  },
  watch: {
    usage: 'herd watch [--topics nodes,stats]',
    options: { topics: { type: 'string' } },
    run: async (values, _p, targets, conn) => {
      const topics = String(values.topics ?? TOPICS.join(',')).split(',').map((t) => t.trim()).filter(Boolean) as Topic[];
      const bad = topics.find((t) => !TOPICS.includes(t));
      if (bad !== undefined || topics.length === 0) throw new UsageError(`--topics takes a comma-separated list of ${TOPICS.join(', ')}`);
      return watch(targets, conn, topics, values.json === true);
    },
  },
};

/**
 * `herd export`: rows to FILE (or stdout); one summary line per host to stdout with
 * --out, else to stderr, so that stdout holds only the rows.
 */
async function exportCommand(targets: Target[], conn: ConnectOptions, opts: Omit<ExportOptions, 'out'>, file: string | undefined, json: boolean): Promise<number> {
  let stream: Writable = process.stdout;
  if (file !== undefined) {
    const f = createWriteStream(file);
    await once(f, 'open').catch((err: Error) => {
      throw new UsageError(`--out ${file}: ${err.message}`);
    });
    stream = f;
  }
  const outcomes = await exportTimeline(targets, conn, { ...opts, out: stream });
  if (file !== undefined) await new Promise<void>((resolve) => stream.end(() => resolve()));
  const summary = (line: string) => (file !== undefined ? out(line) : process.stderr.write(`${line}\n`));
  if (json) {
    summary(toJson(Object.fromEntries(outcomes.map((o) => [o.address, o.error ? { error: errorJson(o.error) } : { generation: o.generation, rows: o.rows }]))));
  } else {
    const width = Math.max(...outcomes.map((o) => o.address.length));
    for (const o of outcomes) summary(`${o.address.padEnd(width)}  ${o.error ? errorText(o.error) : `generation ${o.generation}: ${o.rows} ${opts.format === 'csv' ? `${opts.view} rows` : 'lines'}`}${file !== undefined && !o.error ? ` to ${file}` : ''}`);
  }
  return outcomes.some((o) => o.error) ? 1 : 0;
}

/** What `herd logs` prints first: the last 16 KiB (from the next line start). */
const LOG_BYTES = 16 * 1024;

/** `herd logs`: raw output to stdout (or a JSON object per page), notes and errors to stderr; Ctrl-C ends it with 0. */
async function logs(address: string, conn: ConnectOptions, values: Values, opts: Pick<FollowOptions, 'index' | 'generation' | 'bytes' | 'follow'>): Promise<number> {
  const json = values.json === true;
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let client: HerdClient | undefined;
  try {
    client = await HerdClient.connect(address, conn);
    await followLogs(client, {
      ...opts,
      signal: stop.signal,
      note: (text) => process.stderr.write(`herd logs: ${address}  ${text}\n`),
      write: async (page, data) => {
        // JSON: one object per page that has output (a follow's empty polls print nothing).
        if (json) return void ((data.length > 0 || !opts.follow) && out(toJson({ manager: address, ...page, data: data.toString('utf8') })));
        if (data.length > 0 && !process.stdout.write(data)) await once(process.stdout, 'drain');
      },
    });
    return 0;
  } catch (err) {
    if (stop.signal.aborted) return 0;
    const e = asHerdError(err);
    if (json) out(toJson({ manager: address, error: errorJson(e) }));
    else process.stderr.write(`herd logs: ${address}  ${errorText(e)}\n`);
    return 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await client?.close();
  }
}

/** Subscribes on every manager and prints events until Ctrl-C (exit 0) or every connection is gone (exit 1). */
async function watch(targets: Target[], conn: ConnectOptions, topics: Topic[], json: boolean): Promise<number> {
  const width = Math.max(...targets.map((t) => t.address.length));
  const line = (address: string, text: string, obj: object) =>
    out(json ? toJson({ manager: address, ...obj }) : `${new Date().toISOString().slice(11, 23)}  ${address.padEnd(width)}  ${text}`);
  const live = new Set<HerdClient>();
  let stopping = false;
  let failed = false;
  let allGone!: () => void;
  const gone = new Promise<void>((resolve) => (allGone = resolve));
  const stop = () => {
    stopping = true;
    if (live.size === 0) allGone();
    for (const c of live) void c.close();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);

  await Promise.all(
    targets.map(async ({ address }) => {
      let client: HerdClient | undefined;
      try {
        client = await HerdClient.connect(address, conn);
        const c = client;
        live.add(c);
        // Events in the same read as the subscribe reply are dispatched before our await
        // resumes: hold them so the "subscribed" line comes first.
        let early: ManagerEvent[] | null = [];
        const show = (ev: ManagerEvent) => line(address, showEvent(ev), ev);
        c.on('event', (ev) => (early ? early.push(ev) : show(ev)));
        c.on('close', (err) => {
          if (!live.delete(c)) return;
          if (!stopping) {
            failed = true;
            line(address, `closed: ${err?.message ?? 'connection closed'}`, { closed: true, ...(err ? { error: errorJson(err) } : {}) });
          }
          if (live.size === 0) allGone();
        });
        if (stopping) return void (await c.close());
        const r = await c.subscribe(topics);
        line(address, `subscribed ${r.topics.join(',')}`, { subscribed: r.topics });
        early.forEach(show);
        early = null;
      } catch (err) {
        if (client && !live.delete(client)) return; // its close was already reported (or we are stopping)
        void client?.close();
        if (stopping) return;
        failed = true;
        line(address, errorText(asHerdError(err)), { error: errorJson(asHerdError(err)) });
      }
    }),
  );
  if (live.size === 0) allGone();
  await gone;
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
  return failed ? 1 : 0;
}

// ---- entry --------------------------------------------------------------------

function version(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')).version;
  }
  return 'unknown';
}

function commandHelp(name: string): string {
  const cmd = COMMANDS[name];
  const common = USAGE.slice(USAGE.indexOf('Options of every controller command:'));
  return `usage: ${cmd.usage} [--manager HOST:PORT]... [--hosts FILE] [--token-file FILE] [--json]\n\n${common}`;
}

/** Returns the exit status, or undefined when `herd manager` now owns the process. */
export async function main(argv: string[]): Promise<number | undefined> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    const topic = rest[0];
    out(topic && COMMANDS[topic] ? commandHelp(topic) : USAGE);
    return 0;
  }
  if (name === '--version' || name === '-v') {
    out(version());
    return 0;
  }
  if (name === 'chart') return (await import('./chart-cli')).runChart(rest);
  if (name === 'manager') {
    // Loaded only here: controller commands don't pay for the daemon's dependencies.
    const { runManager } = await import('./daemon');
    await runManager(rest);
    return undefined;
  }
  const cmd = COMMANDS[name];
  try {
    if (!cmd) throw new UsageError(`unknown command "${name}"`);
    if (rest.includes('--help') || rest.includes('-h')) {
      out(commandHelp(name));
      return 0;
    }
    let parsed;
    try {
      parsed = parseArgs({ args: rest, options: { ...COMMON, ...cmd.options }, allowPositionals: true, strict: true });
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    const { values, positionals } = parsed;
    if (positionals.length > (cmd.positionals ?? 0)) throw new UsageError(`unexpected argument "${positionals[cmd.positionals ?? 0]}"`);
    const targets = resolveTargets({ managers: values.manager as string[] | undefined, hostsFile: values.hosts as string | undefined });
    // The same variable the manager reads, so one export serves both sides.
    const tokenFile = (values['token-file'] as string | undefined) ?? (process.env.HERD_TOKEN_FILE || undefined);
    const token = tokenFile !== undefined ? readTokenFile(tokenFile) : undefined;
    const conn: ConnectOptions = {
      // The hello carries our name too, for the manager's log (no extra round trip without a token).
      token,
      client: token !== undefined ? 'herd-cli' : undefined,
      connectTimeoutMs: uint('--connect-timeout', values['connect-timeout'] as string | undefined),
    };
    return await cmd.run(values, positionals, targets, conn);
  } catch (err) {
    if (err instanceof TargetError) {
      process.stderr.write(`herd ${name}: ${err.message}\n`);
      return 2;
    }
    if (err instanceof UsageError) {
      process.stderr.write(`herd: ${err.message}\n\n${cmd ? `usage: ${cmd.usage} [options]\n(herd ${name} --help for all options)` : USAGE}\n`);
      return 2;
    }
    throw err;
  }
}

if (require.main === module) {
  // `herd watch | head` closes our stdout early: that is a normal way to stop.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  main(process.argv.slice(2)).then(
    (code) => {
      if (code !== undefined) process.exitCode = code;
    },
    (err: Error) => {
      process.stderr.write(`herd: ${err.stack ?? err}\n`);
      process.exitCode = 1;
    },
  );
}
