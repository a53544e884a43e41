#!/usr/bin/env node
// The `herd` command. `herd manager` runs the per-host daemon; every other
// subcommand is a controller: it sends one command to each listed manager
// concurrently and reports per host (exit 0 all ok, 1 any failed, 2 usage).

import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { parseArgs, ParseArgsConfig } from 'node:util';
import { ConnectOptions, HerdClient } from './client';
import { FollowOptions, followLogs } from './followlogs';
import { EXPORT_VIEWS, exportTimeline, ExportOptions, ExportView } from './export';
import { asHerdError, errorJson, errorText, FANOUT, FleetOptions, hostJson, onEach, out, Outcome, report } from './fleet';
import { VERSION } from './package';
import { GenerateProgress } from './progress';
import { runExperiment } from './run';
import { ChaosParams, KillParams, ManagerEvent, Topic, TOPICS, WAIT_MODES, WaitMode } from './protocol';
import { fleetStatus, showEvent, showFleetGenerate, showGenerate, showKill, showReset, showStatus } from './show';
import { duration, plural, toJson } from './table';
import { parseAddress, readTokenFile, resolveTargets, spreadByWeight, Target, TargetError } from './targets';
import { statsLines, top } from './top';
import { showUp, SshOptions, upDown } from './up';

const USAGE = `usage: herd <command> [options]

Per-host daemon:
  herd manager [--host ADDR] [--port N] [--node-command PATH] [--node-arg=ARG]...
               [--interface-port N] [--token-file FILE] [--log-dir DIR]
               [--max-frame BYTES] [--max-nodes N] [--kill-grace-ms MS]
               [--stats-interval-ms MS] [--node-log-max-bytes BYTES] [--state-dir DIR]
               [--insecure] [--dashboard [[HOST:]PORT]] [--inspect]
                               (herd manager --help for details)

Docs:
  herd chart [--format mermaid|dot|svg] [--machine manager|node]
                               print the statecharts, drawn from their definitions

Controller commands:
  herd generate N|--per-host N|--total N [--wait spawned|connected] [--timeout MS]
                [--interface HOST:PORT]
                               reset, then start N fresh nodes on every manager, or
                               --total N spread by the hosts file's weights (progress
                               per host on stderr unless --json; a table with several)
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

Experiment workflow:
  herd run N|--per-host N|--total N [generate options] -- HOOK [ARG]...
                               generate (default --wait connected), run HOOK with the node
                               list ($HERD_NODES_FILE, $HERD_NODES), reset at the end, also
                               on Ctrl-C or failure; exit status: the hook's
  herd chaos --kill K --every DURATION [--for DURATION] [--seed S] [--follow]
                               every DURATION the managers kill K random nodes each (in their
                               timelines); --follow prints each kill; herd chaos --stop ends it

Deploy (over ssh, to every host of --hosts / --manager):
  herd up [--ssh CMD] [--dir DIR] [--herd CMD] [--bind ADDR] [--manager-arg=ARG]... [--timeout MS]
                               start a manager on each host (the token goes over ssh's
                               stdin into DIR/.herd/token), then wait until each answers ping
  herd down [--ssh CMD] [--timeout MS]
                               SIGTERM each manager (pid from its hello), wait for its exit

Options of every controller command:
  --manager HOST:PORT    a manager to talk to (repeatable; [v6]:port for IPv6;
                         default: $MANAGER_IPS, comma-separated, else 127.0.0.1:7070)
  --hosts FILE           managers listed one host[:port] [weight=W] per line, # comments
  --fanout K             talk to at most K managers at a time (default 32)
  --token-file FILE      send the token in FILE (hello) before the command
                         (default: $HERD_TOKEN_FILE)
  --connect-timeout MS   give up on an unreachable manager after MS (default 5000)
  --command-timeout MS   give up on a manager that has not answered MS after the start
                         of its connect (default: per request, 60 s or the generate's wait + 30 s)
  --json                 machine output: {"host:port": result or {"error": {code, message}, "status"}}
                         (watch: one JSON object per line)
  -h, --help             this help

Exit status: 0 if every manager succeeded, 1 if any failed, 2 for usage errors.`;

const COMMON = {
  manager: { type: 'string', multiple: true },
  hosts: { type: 'string' },
  'token-file': { type: 'string' },
  'connect-timeout': { type: 'string' },
  'command-timeout': { type: 'string' },
  fanout: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

type Values = Record<string, string | boolean | string[] | undefined>;

class UsageError extends Error {}

function uint(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw new UsageError(`${name} must be a non-negative integer, got "${text}"`);
  return Number(text);
}

// ---- commands ---------------------------------------------------------------

/** `herd up` and `herd down`: how the hosts are reached over ssh, and what runs there. */
const SSH_OPTIONS = {
  ssh: { type: 'string' },
  dir: { type: 'string' },
  herd: { type: 'string' },
  bind: { type: 'string' },
  'manager-arg': { type: 'string', multiple: true },
  timeout: { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

function sshOptions(values: Values, fanout: number): SshOptions {
  const ssh = String(values.ssh ?? 'ssh').split(/\s+/).filter(Boolean);
  if (ssh.length === 0) throw new UsageError('--ssh needs a command, e.g. --ssh "ssh -l herd"');
  return {
    ssh,
    dir: (values.dir as string | undefined) ?? 'herd',
    herd: (values.herd as string | undefined) ?? 'node_modules/.bin/herd',
    bind: values.bind as string | undefined,
    managerArgs: (values['manager-arg'] as string[] | undefined) ?? [],
    fanout,
    timeoutMs: uint('--timeout', values.timeout as string | undefined) ?? 30_000,
  };
}

interface Command {
  usage: string;
  options?: ParseArgsConfig['options'];
  positionals?: number;
  /** Takes a command after `--` (passed as `tail`). */
  tail?: boolean;
  /** Validates flags, then talks to the managers; returns the exit status. */
  run: (values: Values, positionals: string[], targets: Target[], conn: FleetOptions, tail?: string[]) => Promise<number>;
}

const GENERATE_OPTIONS = { wait: { type: 'string' }, timeout: { type: 'string' }, interface: { type: 'string' }, 'per-host': { type: 'string' }, total: { type: 'string' } } as const satisfies ParseArgsConfig['options'];

/** The generate of `herd generate` and `herd run`: flags checked, every manager driven, progress on stderr unless --json. */
async function generateOnAll(values: Values, [nText]: string[], targets: Target[], conn: FleetOptions, defaultWait: WaitMode) {
  if ([nText, values['per-host'], values.total].filter((v) => v !== undefined).length !== 1) throw new UsageError('generate needs exactly one of N, --per-host N or --total N');
  const total = uint('--total', values.total as string | undefined);
  const perHost = uint(nText !== undefined ? 'N' : '--per-host', nText ?? (values['per-host'] as string | undefined));
  // Nodes per host, in the targets' order: the same N on each, or --total spread by weight.
  const ns = total !== undefined ? spreadByWeight(total, targets.map((t) => t.weight ?? 1)) : targets.map(() => perHost!);
  const nOf = new Map(targets.map((t, i) => [t.address, ns[i]]));
  const wait = (values.wait ?? defaultWait) as WaitMode;
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
  const progress = values.json === true ? null : new GenerateProgress(process.stderr, targets.map((t) => t.address), ns, wait);
  const outcomes = await onEach(targets, conn, async (c, address) => {
    if (progress) {
      c.on('event', (ev) => ev.event === 'node' && progress.node(address, ev));
      // Progress is a nicety: a manager that refuses the subscription still gets the generate.
      await c.subscribe(['nodes']).catch(() => undefined);
    }
    let ok = false;
    try {
      const r = await c.generate(nOf.get(address)!, params);
      ok = true;
      return r;
    } finally {
      progress?.done(address, ok);
    }
  });
  // A host given up on (--command-timeout) may still have its generate pending: it failed all the same.
  for (const o of outcomes) if (o.error) progress?.done(o.address, false);
  const summary = progress?.finish();
  if (summary) process.stderr.write(`${summary}\n`);
  return { outcomes, wait, ns, seen: (address: string) => progress?.counts(address) };
}

type GenerateOutcomes = Awaited<ReturnType<typeof generateOnAll>>;

/**
 * The results of a generate: one line for one host; for several, a table with a row
 * per host and the totals. JSON adds `requested` (the nodes asked of each host).
 */
function reportGenerate({ outcomes, wait, ns, seen }: GenerateOutcomes, json: boolean): number {
  if (json) out(toJson(Object.fromEntries(outcomes.map((o, i) => [o.address, { ...(hostJson(o) as object), requested: ns[i] }])), 2));
  else if (outcomes.length === 1) return report(outcomes, false, (r) => showGenerate(r, wait));
  else showFleetGenerate(outcomes, ns, wait, seen).forEach((l) => out(l));
  return outcomes.some((o) => o.error) ? 1 : 0;
}

/** Commands whose fan-out shows a FanoutProgress line on a terminal. */
const PROGRESS_LINE = new Set(['status', 'stats', 'reset', 'kill', 'ping', 'chaos', 'up', 'down']);

const simple = <T>(fn: (c: HerdClient) => Promise<T>, show: (r: T) => string[]): Command['run'] =>
  async (values, _p, targets, conn) => report(await onEach(targets, conn, fn), values.json === true, show);

const COMMANDS: Record<string, Command> = {
  generate: {
    usage: 'herd generate N|--per-host N|--total N [--wait spawned|connected] [--timeout MS] [--interface HOST:PORT]',
    options: GENERATE_OPTIONS,
    positionals: 1,
    run: async (values, positionals, targets, conn) => reportGenerate(await generateOnAll(values, positionals, targets, conn, 'spawned'), values.json === true),
  },
  status: {
    usage: 'herd status [--tail]',
    options: { tail: { type: 'boolean' } },
    run: async (values, _p, targets, conn) => {
      const outcomes = await onEach(targets, conn, (c) => c.status());
      return report(outcomes, values.json === true, (r) => showStatus(r, values.tail === true), () => fleetStatus(outcomes));
    },
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
  run: {
    usage: 'herd run N|--per-host N|--total N [--wait spawned|connected] [--timeout MS] [--interface HOST:PORT] -- HOOK [ARG]...',
    options: GENERATE_OPTIONS,
    positionals: 1,
    tail: true,
    run: async (values, positionals, targets, conn, hook = []) => {
      if (hook.length === 0) throw new UsageError('run needs a hook command after --, e.g. herd run 10 -- ./experiment.sh');
      const note = (line: string) => process.stderr.write(`herd run: ${line}\n`);
      const width = Math.max(...targets.map((t) => t.address.length));
      const perHost = <T>(outcomes: Outcome<T>[], show: (r: T) => string) =>
        outcomes.forEach((o) => note(`${o.address.padEnd(width)}  ${o.error ? errorText(o.error) : show(o.result)}`));
      return runExperiment({
        hook,
        note,
        generate: async () => {
          const { outcomes, wait } = await generateOnAll(values, positionals, targets, conn, 'connected');
          perHost(outcomes, (r) => showGenerate(r, wait)[0]);
          const ok = outcomes.flatMap((o) => (o.error ? [] : [{ address: o.address, result: o.result }]));
          return {
            ok: ok.length === outcomes.length,
            nodes: ok.flatMap(({ address, result }) => [...result.nodes].sort((a, b) => a.index - b.index).map((n) => ({ host: address, index: n.index, pid: n.pid }))),
            generations: Object.fromEntries(ok.map(({ address, result }) => [address, result.generation])),
          };
        },
        reset: async () => {
          const outcomes = await onEach(targets, conn, (c) => c.reset());
          perHost(outcomes, (r) => `reset: ${showReset(r)[0]}`);
          return outcomes.every((o) => !o.error);
        },
      });
    },
  },
  chaos: {
    usage: 'herd chaos --kill K --every DURATION [--for DURATION] [--seed S] [--follow] | herd chaos --stop',
    options: { kill: { type: 'string' }, every: { type: 'string' }, for: { type: 'string' }, seed: { type: 'string' }, follow: { type: 'boolean', short: 'f' }, stop: { type: 'boolean' } },
    run: async (values, _p, targets, conn) => {
      if (values.stop === true) {
        if (['kill', 'every', 'for', 'seed', 'follow'].some((k) => values[k] !== undefined)) throw new UsageError('--stop takes no other chaos option');
        return simple((c) => c.chaos({ stop: true }), (r) => [r.kills > 0 ? `chaos stopped after ${plural(r.kills, 'kill')}` : 'no chaos was running'])(values, [], targets, conn);
      }
      const kill = uint('--kill', values.kill as string | undefined);
      if (kill === undefined || kill === 0) throw new UsageError('chaos needs --kill K (nodes per round, at least 1)');
      const everyMs = ms('--every', values.every as string | undefined);
      if (everyMs === undefined) throw new UsageError('chaos needs --every DURATION (e.g. 2s, 500ms)');
      const forMs = ms('--for', values.for as string | undefined);
      const seed = uint('--seed', values.seed as string | undefined);
      const params = { kill, everyMs, ...(forMs !== undefined ? { forMs } : {}), ...(seed !== undefined ? { seed } : {}) };
      if (values.follow === true) return followChaos(targets, conn, params, values.json === true);
      return simple((c) => c.chaos(params), (r) => [`chaos started in generation ${r.generation}: ${plural(kill, 'node')} every ${duration(everyMs)}${forMs !== undefined ? ` for ${duration(forMs)}` : ' until herd chaos --stop, a reset or a generate'} (seed ${r.seed})`])(values, [], targets, conn);
    },
  },
  up: {
    usage: 'herd up [--ssh CMD] [--dir DIR] [--herd CMD] [--bind ADDR] [--manager-arg=ARG]... [--timeout MS]',
    options: SSH_OPTIONS,
    run: async (values, _p, targets, conn) => report(await upDown('up', targets, conn, sshOptions(values, conn.fanout ?? FANOUT)), values.json === true, showUp),
  },
  down: {
    usage: 'herd down [--ssh CMD] [--timeout MS]',
    options: SSH_OPTIONS,
    run: async (values, _p, targets, conn) => report(await upDown('down', targets, conn, sshOptions(values, conn.fanout ?? FANOUT)), values.json === true, showUp),
  },
};

/** A duration flag: 500ms, 2s, 1m, 1h, or plain milliseconds. */
function ms(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text);
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const value = m ? Math.round(Number(m[1]) * unit[m[2] ?? 'ms']) : NaN;
  if (!Number.isSafeInteger(value)) throw new UsageError(`${name} must be a duration such as 500ms, 2s or 1m, got "${text}"`);
  return value;
}

/**
 * `herd chaos --follow`: subscribes, starts chaos on every manager, prints what each run
 * does until every run has ended; Ctrl-C stops the runs (and so the command).
 */
async function followChaos(targets: Target[], conn: ConnectOptions, params: ChaosParams, json: boolean): Promise<number> {
  const width = Math.max(...targets.map((t) => t.address.length));
  const clients: HerdClient[] = [];
  const stop = () => clients.forEach((c) => void c.chaos({ stop: true }).catch(() => undefined));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  try {
    const outcomes = await Promise.all(
      targets.map(async ({ address }) => {
        let client: HerdClient | undefined;
        try {
          client = await HerdClient.connect(address, conn);
          const c = client;
          const ended = new Promise<void>((resolve) => {
            c.on('event', (ev) => {
              if (ev.event !== 'chaos') return;
              out(json ? toJson({ manager: address, ...ev }) : `${new Date().toISOString().slice(11, 23)}  ${address.padEnd(width)}  ${showEvent(ev)}`);
              if (ev.action === 'stop') resolve();
            });
            c.on('close', () => resolve());
          });
          await c.subscribe(['nodes']);
          clients.push(c);
          await c.chaos(params);
          await ended;
          return true;
        } catch (err) {
          const e = asHerdError(err);
          out(json ? toJson({ manager: address, error: errorJson(e) }) : `${address.padEnd(width)}  ${errorText(e)}`);
          return false;
        } finally {
          await client?.close();
        }
      }),
    );
    return outcomes.every(Boolean) ? 0 : 1;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

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

function commandHelp(name: string): string {
  const cmd = COMMANDS[name];
  const common = USAGE.slice(USAGE.indexOf('Options of every controller command:'));
  return `usage: ${cmd.usage} [--manager HOST:PORT]... [--hosts FILE] [--token-file FILE]\n       [--fanout K] [--connect-timeout MS] [--command-timeout MS] [--json]\n\n${common}`;
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
    out(VERSION);
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
    // A command after `--` (herd run's hook) keeps its own arguments.
    const dashes = cmd.tail ? rest.indexOf('--') : -1;
    const args = dashes < 0 ? rest : rest.slice(0, dashes);
    if (args.includes('--help') || args.includes('-h')) {
      out(commandHelp(name));
      return 0;
    }
    let parsed;
    try {
      parsed = parseArgs({ args, options: { ...COMMON, ...cmd.options }, allowPositionals: true, strict: true });
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    const { values, positionals } = parsed;
    if (positionals.length > (cmd.positionals ?? 0)) throw new UsageError(`unexpected argument "${positionals[cmd.positionals ?? 0]}"`);
    const targets = resolveTargets({ managers: values.manager as string[] | undefined, hostsFile: values.hosts as string | undefined, managerIps: process.env.MANAGER_IPS });
    // The same variable the manager reads, so one export serves both sides.
    const tokenFile = (values['token-file'] as string | undefined) ?? (process.env.HERD_TOKEN_FILE || undefined);
    const token = tokenFile !== undefined ? readTokenFile(tokenFile) : undefined;
    const fanout = uint('--fanout', values.fanout as string | undefined);
    const commandTimeoutMs = uint('--command-timeout', values['command-timeout'] as string | undefined);
    if (fanout === 0 || commandTimeoutMs === 0) throw new UsageError(`${fanout === 0 ? '--fanout' : '--command-timeout'} must be at least 1`);
    const conn: FleetOptions = {
      // The hello carries our name too, for the manager's log (no extra round trip without a token).
      token,
      client: token !== undefined ? 'herd-cli' : undefined,
      connectTimeoutMs: uint('--connect-timeout', values['connect-timeout'] as string | undefined),
      commandTimeoutMs,
      fanout,
      // The commands that answer once; generate draws its own progress, the following ones stream.
      progress: PROGRESS_LINE.has(name) && values.json !== true ? name : undefined,
    };
    return await cmd.run(values, positionals, targets, conn, dashes < 0 ? [] : rest.slice(dashes + 1));
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
