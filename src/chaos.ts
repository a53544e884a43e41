// Fault injection for churn experiments (herd's `chaos` command). Every `everyMs`,
// `kill` random live nodes of the current generation are killed, each through the
// chart's ordinary serialised `kill` (so state changes stay in arrival order with every
// other command), and each action is reported as a ChaosAction: the daemon writes it to
// the timeline and publishes it as a `chaos` event. The run lives in the manager, so it
// goes on without the controller; it ends after `forMs`, on `{stop}`, on any reset or
// generate, or when the generation has no live node left. One run at a time: a new one
// replaces the old.

import { randomInt } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Logger } from './logger';
import type { ChaosAction, ChaosEnd, ChaosParams, CommandResults, WireError } from './protocol';
import type { Supervisor } from './supervisor';

/** mulberry32: a small seeded PRNG, so that a seed replays the same choices. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `k` of `items` (all if fewer), chosen by a partial Fisher-Yates shuffle driven by `random`. */
export function pick<T>(items: readonly T[], k: number, random: () => number): T[] {
  const a = [...items];
  const n = Math.min(k, a.length);
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(random() * (a.length - i));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a.slice(0, n);
}

interface Run {
  generation: number;
  kill: number;
  random: () => number;
  round: number;
  kills: number;
  /** Indexes whose kill is queued or under way: not chosen again. */
  inFlight: Set<number>;
  interval: NodeJS.Timeout;
  deadline: NodeJS.Timeout | null;
}

type Result = { result: CommandResults['chaos'] } | { error: WireError };

export class Chaos extends EventEmitter<{ action: [ChaosAction] }> {
  private run: Run | null = null;

  constructor(private readonly supervisor: Supervisor, private readonly logger: Logger) {
    super();
    // Any reset or generate, whoever sends it, ends the run as it is accepted.
    supervisor.on('command', (note) => {
      if (note.reply === undefined && (note.request.type === 'reset' || note.request.type === 'generate')) this.end(note.request.type);
    });
  }

  command(params: ChaosParams): Result {
    const { generation } = this.supervisor.generation();
    if ('stop' in params) {
      const kills = this.run?.kills ?? 0;
      this.end('stopped');
      return { result: { running: false, generation, kills } };
    }
    if (this.candidates(new Set()).length === 0) {
      return { error: { code: 'BAD_ARGUMENT', message: `generation ${generation} has no running node to kill; generate nodes first` } };
    }
    this.end('stopped');
    const seed = params.seed ?? randomInt(2 ** 32);
    const run: Run = {
      generation,
      kill: params.kill,
      random: seededRandom(seed),
      round: 0,
      kills: 0,
      inFlight: new Set(),
      interval: setInterval(() => this.round(run), params.everyMs).unref(),
      deadline: params.forMs === undefined ? null : setTimeout(() => this.end('done'), params.forMs).unref(),
    };
    this.run = run;
    this.report({ generation, action: 'start', kill: params.kill, everyMs: params.everyMs, forMs: params.forMs ?? null, seed });
    this.logger.info(`chaos: killing ${params.kill} random node(s) of generation ${generation} every ${params.everyMs} ms${params.forMs === undefined ? ' until stopped' : ` for ${params.forMs} ms`} (seed ${seed})`);
    return { result: { running: true, generation, seed, kills: 0 } };
  }

  /** Ends the current run, if any (also on shutdown, through its reset). */
  end(reason: ChaosEnd): void {
    const run = this.run;
    if (!run) return;
    this.run = null;
    clearInterval(run.interval);
    if (run.deadline) clearTimeout(run.deadline);
    this.report({ generation: run.generation, action: 'stop', reason, kills: run.kills });
    this.logger.info(`chaos: ended (${reason}) after ${run.kills} kill(s) in generation ${run.generation}`);
  }

  /** Nodes that may be chosen, by index order (so that a seed replays the same choice on the same set). */
  private candidates(inFlight: Set<number>): { index: number; pid: number }[] {
    const nodes = this.supervisor.snapshot().context.nodes;
    return nodes
      .filter((n) => (n.phase === 'spawning' || n.phase === 'running') && n.pid !== null && !inFlight.has(n.index))
      .map((n) => ({ index: n.index, pid: n.pid as number }))
      .sort((a, b) => a.index - b.index);
  }

  private round(run: Run): void {
    if (this.run !== run) return;
    if (this.supervisor.generation().generation !== run.generation) return this.end('generate');
    const candidates = this.candidates(run.inFlight);
    if (candidates.length === 0) {
      if (run.inFlight.size === 0) this.end('no-live-nodes');
      return;
    }
    run.round++;
    for (const node of pick(candidates, run.kill, run.random)) {
      run.kills++;
      run.inFlight.add(node.index);
      this.report({ generation: run.generation, action: 'kill', round: run.round, ...node });
      void this.supervisor.request({ type: 'kill', index: node.index }).then((reply) => {
        run.inFlight.delete(node.index);
        // The node may have exited on its own, or a reset overtaken the kill: nothing to undo.
        if ('error' in reply) this.logger.debug(`chaos: kill of index ${node.index}: ${reply.error.message}`);
      });
    }
  }

  private report(action: ChaosAction): void {
    if (action.action === 'kill') this.logger.info(`chaos: round ${action.round} kills index ${action.index} pid ${action.pid}`);
    this.emit('action', action);
  }
}
