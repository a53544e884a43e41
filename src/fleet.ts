// Running one controller command against many managers: at most --fanout at a
// time, a deadline per host, and the per-host outcome classes and report (as
// ClusterShell and Ansible report ok / failed / unreachable per host).

import { ConnectOptions, HerdClient, HerdError } from './client';
import { mapLimit } from './pool';
import { FanoutProgress } from './progress';
import { plural, toJson } from './table';
import type { Target } from './targets';

export const out = (line = '') => process.stdout.write(`${line}\n`);

/** The result a host produced, or why it could not. */
export type Outcome<T> = { address: string; result: T; error?: undefined } | { address: string; error: HerdError };

export function asHerdError(err: unknown): HerdError {
  return err instanceof HerdError ? err : new HerdError('INTERNAL', (err as Error)?.message ?? String(err));
}

export function errorJson(e: HerdError) {
  return { code: e.code, message: e.message, ...(e.details !== undefined ? { details: e.details } : {}) };
}

export function errorText(e: HerdError): string {
  const hint = e.code === 'UNAUTHENTICATED' ? ' (herd: give the manager\'s token with --token-file FILE or $HERD_TOKEN_FILE)' : '';
  return `error ${e.code}: ${e.message}${e.details !== undefined ? ` ${toJson(e.details)}` : ''}${hint}`;
}

/** How a controller command reaches the fleet: the connection, plus how many hosts at once and a deadline per host. */
export interface FleetOptions extends ConnectOptions {
  /** Hosts talked to at the same time (--fanout); the rest wait for a free slot. */
  fanout?: number;
  /** Per host, from connecting to the answer (--command-timeout); none: the client's per-request defaults. */
  commandTimeoutMs?: number;
  /** Shows a FanoutProgress line with this label on a terminal (stderr) while the hosts answer. */
  progress?: string;
}

/** Default --fanout, as clush's. */
export const FANOUT = 32;

/**
 * Runs `fn` against every target, at most `fanout` at a time; one host's failure or
 * silence never holds up another beyond its own deadline. Outcomes keep the targets' order.
 */
export function onEach<T>(targets: Target[], conn: FleetOptions, fn: (c: HerdClient, address: string) => Promise<T>): Promise<Outcome<T>[]> {
  return withProgress(conn, targets.length, (done) =>
    mapLimit(targets, conn.fanout ?? FANOUT, async (t) => {
      const outcome = await onOne(t.address, conn, fn);
      done(outcome);
      return outcome;
    }),
  );
}

/** Runs a fan-out of `total` hosts, with conn.progress's line on a terminal while it lasts. */
export async function withProgress<T>(conn: FleetOptions, total: number, run: (done: (o: Outcome<T>) => void) => Promise<Outcome<T>[]>): Promise<Outcome<T>[]> {
  const progress = conn.progress !== undefined ? new FanoutProgress(process.stderr, conn.progress, total) : null;
  try {
    return await run((o) => progress?.host(!o.error));
  } finally {
    progress?.finish();
  }
}

async function onOne<T>(address: string, conn: FleetOptions, fn: (c: HerdClient, address: string) => Promise<T>): Promise<Outcome<T>> {
  let client: HerdClient | undefined;
  // Past the deadline, a connect or hello still under way is abandoned, not left to its own timeouts.
  const abandon = new AbortController();
  const work = (async () => {
    client = await HerdClient.connect(address, { ...conn, signal: abandon.signal });
    return fn(client, address);
  })();
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  const deadline = conn.commandTimeoutMs;
  const expired = new Promise<never>((_, reject) => {
    if (deadline === undefined) return;
    timer = setTimeout(() => {
      timedOut = true;
      abandon.abort();
      reject(new HerdError('CLIENT_TIMEOUT', `no answer within ${deadline} ms (--command-timeout)`));
    }, deadline);
  });
  try {
    return { address, result: await Promise.race([work, expired]) };
  } catch (err) {
    return { address, error: asHerdError(err) };
  } finally {
    clearTimeout(timer);
    // After a timeout the abort has already closed the connection, at whatever stage
    // it was; nothing is waited for.
    const closed = client ? client.close() : work.then(() => client?.close(), () => client?.close());
    if (!timedOut) await closed;
  }
}

/** The per-host outcome classes of a fleet command (as ClusterShell and Ansible report them). */
export function hostClass(o: Outcome<unknown>): 'ok' | 'unreachable' | 'timed out' | 'failed' {
  if (!o.error) return 'ok';
  if (o.error.code === 'UNREACHABLE' || o.error.code === 'CLOSED') return 'unreachable';
  if (o.error.code === 'CLIENT_TIMEOUT') return 'timed out';
  return 'failed';
}

/** "3 hosts: 2 ok, 1 unreachable" (failed hosts counted together whatever their codes). */
export function fleetLine(outcomes: Outcome<unknown>[]): string {
  const counts = new Map<string, number>(['ok', 'failed', 'unreachable', 'timed out'].map((c) => [c, 0]));
  for (const o of outcomes) {
    const s = hostClass(o);
    counts.set(s, (counts.get(s) ?? 0) + 1);
  }
  return `${plural(outcomes.length, 'host')}: ${[...counts].filter(([, n]) => n > 0).map(([s, n]) => `${n} ${s}`).join(', ')}`;
}

/** A host's JSON entry: its result, or `{error, status}` (status: unreachable, timed out or failed). */
export const hostJson = (o: Outcome<unknown>) => (o.error ? { error: errorJson(o.error), status: hostClass(o) } : o.result);

/**
 * One line per host (padded so results align), or a section per host for multi-line
 * results; with several hosts, a last line counting them by outcome (plus `fleet`'s lines).
 */
export function report<T>(outcomes: Outcome<T>[], json: boolean, show: (r: T) => string[], fleet: () => string[] = () => []): number {
  if (json) {
    out(toJson(Object.fromEntries(outcomes.map((o) => [o.address, hostJson(o)])), 2));
  } else {
    const width = Math.max(...outcomes.map((o) => o.address.length));
    const sections = outcomes.map((o) => (o.error ? [errorText(o.error)] : show(o.result)));
    const multi = sections.some((s) => s.length > 1);
    sections.forEach((lines, i) => {
      if (multi && i > 0) out();
      out(`${outcomes[i].address.padEnd(width)}  ${lines[0]}`);
      lines.slice(1).forEach((l) => out(l));
    });
    if (outcomes.length > 1) {
      if (multi) out();
      [fleetLine(outcomes), ...fleet()].forEach((l) => out(l));
    }
  }
  return outcomes.some((o) => o.error) ? 1 : 0;
}

