// Which managers a controller command talks to (--manager, --hosts) and with which token.

import { readFileSync } from 'node:fs';
import net from 'node:net';
import { DEFAULTS } from './protocol';

export interface Target {
  host: string;
  port: number;
  /** Canonical `host:port` (`[v6]:port`): how the CLI names the manager in its output. */
  address: string;
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

/** One `host[:port]` per line; `#` starts a comment; blank lines are ignored. */
export function parseHostsFile(text: string, file: string): Target[] {
  const targets: Target[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) return;
    try {
      targets.push(parseAddress(line));
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

/** --manager entries then --hosts entries, duplicates dropped; 127.0.0.1:7070 when neither is given. */
export function resolveTargets(opts: { managers?: string[]; hostsFile?: string }): Target[] {
  const all = [
    ...(opts.managers ?? []).map((m) => {
      try {
        return parseAddress(m);
      } catch (err) {
        throw new TargetError(`--manager ${(err as Error).message}`);
      }
    }),
    ...(opts.hostsFile !== undefined ? readHostsFile(opts.hostsFile) : []),
  ];
  if (all.length === 0) return [parseAddress(`127.0.0.1:${DEFAULTS.port}`)];
  const seen = new Set<string>();
  return all.filter((t) => !seen.has(t.address) && seen.add(t.address));
}

export function readTokenFile(file: string): string {
  const token = readText(file, 'token file').trim();
  if (!token) throw new TargetError(`${file}: token file is empty`);
  return token;
}
