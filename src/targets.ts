// Which managers a controller command talks to (--manager, --hosts) and with which token.

import { readFileSync } from 'node:fs';
import net from 'node:net';
import { DEFAULTS } from './protocol';

export interface Target {
  host: string;
  port: number;
  /** Canonical `host:port` (`[v6]:port`): how the CLI names the manager in its output. */
  address: string;
  /** Share of a `--total` (hosts file `weight=W`); 1 when not given. */
  weight?: number;
}

/** Something the user gave (a flag or a file) is malformed: the CLI exits 2 on it. */
export class TargetError extends Error {
  override name = 'TargetError';
}

// Host names and IPv4 literals; whitespace or stray characters are rejected so that
// a mangled hosts-file line fails here rather than as a confusing DNS error later.
const HOSTNAME = /^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$/;

/** Parses `host`, `host:port`, `[v6]` or `[v6]:port`; `defaultPort: null` makes the port mandatory. */
export function parseAddress(text: string, defaultPort: number | null = DEFAULTS.port): Target {
  const s = text.trim();
  let host: string;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]*)\](?::(.*))?$/.exec(s);
  if (bracketed) {
    [, host, portText] = bracketed;
    if (!net.isIPv6(host)) throw new TargetError(`"${s}": "${host}" is not an IPv6 address`);
  } else if (s.indexOf(':') !== s.lastIndexOf(':')) {
    // "::1:7070" could be an address or address+port: insist on brackets.
    throw new TargetError(`"${s}": write IPv6 addresses in brackets, e.g. [${s}]:${DEFAULTS.port}`);
  } else {
    const colon = s.indexOf(':');
    host = colon < 0 ? s : s.slice(0, colon);
    portText = colon < 0 ? undefined : s.slice(colon + 1);
    if (!HOSTNAME.test(host)) throw new TargetError(`"${s}": "${host}" is not a valid host name`);
  }
  let port: number;
  if (portText === undefined) {
    if (defaultPort === null) throw new TargetError(`"${s}": a port is required (host:port)`);
    port = defaultPort;
  } else {
    port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
    if (!(port >= 1 && port <= 65535)) throw new TargetError(`"${s}": port "${portText}" is not in 1..65535`);
  }
  return { host, port, address: `${host.includes(':') ? `[${host}]` : host}:${port}` };
}

/** Largest weight accepted: keeps `--total` arithmetic exact. */
const MAX_WEIGHT = 1_000_000;

/** One `host[:port] [weight=W]` per line; `#` starts a comment; blank lines are ignored. */
export function parseHostsFile(text: string, file: string): Target[] {
  const targets: Target[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) return;
    try {
      const [address, ...rest] = line.split(/\s+/);
      const target = parseAddress(address);
      for (const field of rest) {
        const m = /^weight=(\d+)$/.exec(field);
        const weight = m ? Number(m[1]) : NaN;
        if (!(weight >= 1 && weight <= MAX_WEIGHT)) throw new TargetError(`"${field}": expected weight=W with W an integer from 1 to ${MAX_WEIGHT}`);
        target.weight = weight;
      }
      targets.push(target);
    } catch (err) {
      throw new TargetError(`${file}:${i + 1}: ${(err as Error).message}`);
    }
  });
  return targets;
}

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new TargetError(`cannot read ${what} ${file}: ${(err as Error).message}`);
  }
}

export function readHostsFile(file: string): Target[] {
  const targets = parseHostsFile(readText(file, 'hosts file'), file);
  if (targets.length === 0) throw new TargetError(`${file}: hosts file lists no managers`);
  return targets;
}

/**
 * --manager entries then --hosts entries, duplicates dropped. When neither is given:
 * the comma-separated `host[:port]` list in MANAGER_IPS (the variable the managers
 * read to pick their own address), else 127.0.0.1:7070.
 */
export function resolveTargets(opts: { managers?: string[]; hostsFile?: string; managerIps?: string }): Target[] {
  /** Each of `list` parsed, an error naming where it came from. */
  const parseAll = (list: string[], source: string) => list.map((m) => {
    try {
      return parseAddress(m);
    } catch (err) {
      throw new TargetError(`${source} ${(err as Error).message}`);
    }
  });
  const all = [
    ...parseAll(opts.managers ?? [], '--manager'),
    ...(opts.hostsFile !== undefined ? readHostsFile(opts.hostsFile) : []),
  ];
  if (all.length === 0) all.push(...parseAll((opts.managerIps ?? '').split(',').map((s) => s.trim()).filter(Boolean), 'MANAGER_IPS'));
  if (all.length === 0) return [parseAddress(`127.0.0.1:${DEFAULTS.port}`)];
  const seen = new Set<string>();
  return all.filter((t) => !seen.has(t.address) && seen.add(t.address));
}

/**
 * Splits `total` nodes over hosts in proportion to their weights: each gets the
 * integer part of its share, and the nodes left over go one each to the largest
 * remainders, ties to the host listed first (the same answer on every run).
 */
export function spreadByWeight(total: number, weights: number[]): number[] {
  const sum = weights.reduce((a, b) => a + b, 0);
  const shares = weights.map((w) => Math.floor((total * w) / sum));
  const order = weights.map((w, i) => ({ i, rest: (total * w) % sum })).sort((a, b) => b.rest - a.rest || a.i - b.i);
  let left = total - shares.reduce((a, b) => a + b, 0);
  for (const { i } of order) {
    if (left-- <= 0) break;
    shares[i]++;
  }
  return shares;
}

export function readTokenFile(file: string): string {
  const token = readText(file, 'token file').trim();
  if (!token) throw new TargetError(`${file}: token file is empty`);
  return token;
}
