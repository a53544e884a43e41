// Human output of the controller commands: one result (or event) as lines of text.

import { fleetLine, hostClass, Outcome } from './fleet';
import type { CommandResults, ManagerEvent, NodeInfo, WaitMode } from './protocol';
import { bytes, duration, percent, plural, ranges, table, toJson } from './table';

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

export function showStatus(s: CommandResults['status'], allTails = false): string[] {
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

/** `herd status` on several hosts: the counts summed over the managers that answered. */
export function fleetStatus(outcomes: Outcome<CommandResults['status']>[]): string[] {
  const ok = outcomes.flatMap((o) => (o.error ? [] : [o.result]));
  if (ok.length === 0) return [];
  const sum = (pick: (s: CommandResults['status']) => number) => ok.reduce((total, s) => total + pick(s), 0);
  const failed = sum((s) => s.failed?.length ?? 0);
  return [`fleet: target ${sum((s) => s.target)}  spawning ${sum((s) => s.counts.spawning)}  running ${sum((s) => s.counts.running)}  killed ${sum((s) => s.counts.killed)}${failed > 0 ? `  failed to start ${failed}` : ''}`];
}

/** Nodes the OS refused to start (herd's addition to status), a few lines at most. */
function showFailed(failed: CommandResults['status']['failed']): string[] {
  if (failed.length === 0) return [];
  const shown = failed.slice(0, 5).map((f) => `failed  index ${f.index}  ${f.code}: ${f.message}`);
  return failed.length > 5 ? [...shown, `failed  ... and ${failed.length - 5} more (--json lists all)`] : shown;
}

export function showGenerate(r: CommandResults['generate'], wait: WaitMode): string[] {
  const nodes = [...r.nodes].sort((a, b) => a.index - b.index);
  const pids = nodes.length > 0 ? `  pids ${ranges(nodes.map((n) => n.pid))}` : '';
  return [`generation ${r.generation}: ${plural(nodes.length, 'node')} ${wait}${pids}`];
}

/** `herd generate` on several hosts: a row per host (what it was asked, spawned, connected), then the totals. */
export function showFleetGenerate(
  outcomes: Outcome<CommandResults['generate']>[],
  ns: number[],
  wait: WaitMode,
  seen: (address: string) => { spawned: number; connected: number } | undefined,
): string[] {
  const sums = { asked: 0, spawned: 0, connected: 0 };
  const rows = outcomes.map((o, i) => {
    // A host's own reply is the truth; without one, what its node events showed before it failed.
    const events = seen(o.address);
    const spawned = o.error ? events?.spawned : o.result.nodes.length;
    const connected = !o.error && wait === 'connected' ? o.result.nodes.length : events?.connected;
    sums.asked += ns[i];
    sums.spawned += spawned ?? 0;
    sums.connected += connected ?? 0;
    const cls = hostClass(o);
    return [
      o.address,
      o.error && cls === 'failed' ? `failed (${o.error.code})` : cls,
      o.error ? '-' : String(o.result.generation),
      ns[i],
      spawned ?? '-',
      connected ?? '-',
      o.error ? printable(o.error.message) : '',
    ];
  });
  const totals = `${fleetLine(outcomes)}; nodes spawned ${sums.spawned}/${sums.asked}, connected ${sums.connected}/${sums.asked}`;
  return [...table(['HOST', 'STATUS', 'GENERATION', 'NODES', 'SPAWNED', 'CONNECTED', 'DETAIL'], rows), totals];
}

export function showReset(r: CommandResults['reset']): string[] {
  // The contract guarantees only `killed`; outcomes and strays are herd's additions.
  let line = `killed ${r.killed}`;
  if (r.outcomes) line += `  (terminated ${r.outcomes.terminated}, killed after grace ${r.outcomes.killed}, had exited ${r.outcomes.exited})`;
  const strays = r.strays ? r.strays.cgroup + r.strays.sweep : 0;
  if (strays > 0) line += `  strays killed ${strays} (cgroup ${r.strays.cgroup}, run-id sweep ${r.strays.sweep})`;
  return [line];
}

export function showKill(r: CommandResults['kill']): string[] {
  return [`killed pid ${r.pid}  ${r.signal ? `signal ${r.signal}` : `exit ${r.exitCode ?? '?'}`}`];
}

export function showEvent(ev: ManagerEvent): string {
  switch (ev.event) {
    case 'node': {
      const end = ev.state === 'killed' ? (ev.signal ? `  signal ${ev.signal}` : `  exit ${ev.exitCode ?? '?'}`) : '';
      return `node   gen ${ev.generation}  index ${ev.index}  pid ${ev.pid}  ${ev.state}${end}`;
    }
    case 'ready':
      return `ready  gen ${ev.generation}  ${plural(ev.n, 'node')} connected`;
    case 'chaos':
      if (ev.action === 'kill') return `chaos  gen ${ev.generation}  round ${ev.round}  kill index ${ev.index}  pid ${ev.pid}`;
      if (ev.action === 'start') return `chaos  gen ${ev.generation}  start: ${plural(ev.kill, 'node')} every ${duration(ev.everyMs)}${ev.forMs !== null ? ` for ${duration(ev.forMs)}` : ''}  seed ${ev.seed}`;
      return `chaos  gen ${ev.generation}  stop (${ev.reason}) after ${plural(ev.kills, 'kill')}`;
    case 'stats': {
      const cpu = ev.nodes.reduce((sum, n) => sum + n.cpu, 0);
      const rss = ev.nodes.reduce((sum, n) => sum + n.rss, 0);
      return `stats  cpu ${percent(ev.host.load)}  mem ${bytes(ev.host.memUsed)} / ${bytes(ev.host.memTotal)}  ${plural(ev.nodes.length, 'node')}: cpu ${percent(cpu)} rss ${bytes(rss)}`;
    }
    default:
      return `${(ev as { event: string }).event}  ${toJson(ev)}`;
  }
}

