// Configuration of `herd manager`: the fixed command line of PROTOCOL.md, its
// defaults, MANAGER_IPS, and the token file.

import { readFileSync, statSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { HostLimits, readLimits } from './limits';
import { NODE_LOG_DEFAULTS } from './nodeoutput';
import { DEFAULTS } from './protocol';

export interface ManagerConfig {
  host: string;
  port: number;
  nodeCommand: string;
  nodeArgs: string[];
  interfacePort: number;
  token: string | null;
  logDir: string;
  maxFrame: number;
  /** --max-nodes, or what the host's limits allow (src/limits.ts). */
  maxNodes: number;
  /** The host's limits, read once at start-up (the daemon sizes the launcher from them). */
  limits: HostLimits;
  /** Where the run's state file goes (src/runstate.ts). */
  stateDir: string;
  killGraceMs: number;
  statsIntervalMs: number;
  /** Listen on a non-loopback address without a token (--insecure). */
  insecure: boolean;
  /** Where the dashboard page is served (--dashboard); always a loopback address. */
  dashboard: { host: string; port: number } | null;
  /** Send the manager's statechart to Stately's hosted inspector (--inspect). */
  inspect: boolean;
  /** With a token: ms a connection has to authenticate (HERD_AUTH_TIMEOUT_MS). */
  authTimeoutMs: number;
  /** A node's output file is rotated past this size; 0 never (--node-log-max-bytes). */
  nodeLogMaxBytes: number;
  /** How often node output sizes are checked (HERD_NODE_LOG_CHECK_MS). */
  nodeLogCheckMs: number;
  /** Things the user should fix that do not stop the manager; logged at startup. */
  warnings: string[];
}

export const EXAMPLE_NODE = path.resolve(__dirname, '../example/node.js');
export const DEFAULT_AUTH_TIMEOUT_MS = 10_000;

/**
 * Node flags the manager runs with (bin/herd and deploy/ pass them; V8 reads them
 * only at start-up). A young generation of 2 MiB instead of V8's 16: the burst of
 * garbage of a `generate 1000` no longer grows it, and the manager's RSS with 1000
 * nodes was 93-94 MB instead of 114-120 (111-113 instead of 131-135 with them all
 * connected); generate and status times unchanged, the reset of 1000 connected
 * nodes about a sixth slower (README, "Memory").
 */
export const MANAGER_NODE_FLAGS = ['--max-semi-space-size=2'];

/** `--dashboard` without a port. */
export const DASHBOARD_PORT = 7080;

export const MANAGER_USAGE = `usage: herd manager [--host ADDR] [--port N] [--node-command PATH] [--node-arg=ARG]...
                    [--interface-port N] [--token-file FILE] [--log-dir DIR]
                    [--max-frame BYTES] [--max-nodes N] [--kill-grace-ms MS]
                    [--stats-interval-ms MS] [--state-dir DIR] [--insecure]
                    [--node-log-max-bytes BYTES] [--dashboard [[HOST:]PORT]] [--inspect]

  --host ADDR              address to bind (default: the first address in MANAGER_IPS
                           that belongs to this machine, else 127.0.0.1)
  --port N                 TCP port (default ${DEFAULTS.port}; 0 picks a free one)
  --node-command PATH      program started for each node (default: the bundled example node)
  --node-arg=ARG           argument before the two the manager appends (repeatable;
                           use the = form for values that start with -)
  --interface-port N       controller port given to nodes when generate names no
                           interface (default ${DEFAULTS.interfacePort})
  --token-file FILE        require clients to send this token in hello (default:
                           $HERD_TOKEN_FILE); nodes receive it as HERD_TOKEN
  --log-dir DIR            manager.log, stats.jsonl, timeline/ and node output
                           (default ./herd-logs)
  --max-frame BYTES        largest accepted frame (default ${DEFAULTS.maxFrame})
  --max-nodes N            largest generate accepted (default: what RLIMIT_NOFILE,
                           RLIMIT_NPROC and pid_max allow; the startup log says which binds)
  --kill-grace-ms MS       SIGTERM to SIGKILL delay when killing a node (default ${DEFAULTS.killGraceMs})
  --stats-interval-ms MS   how often CPU and memory are sampled and stats events sent
                           (default ${DEFAULTS.statsIntervalMs})
  --state-dir DIR          state file for reaping leftovers after a crash (default
                           $HERD_STATE_DIR, else /run/herd as root, else $XDG_RUNTIME_DIR/herd,
                           else /tmp/herd-UID)
  --insecure               allow a non-loopback --host without a token
  --dashboard [[HOST:]PORT]
                           serve the live dashboard on http://HOST:PORT/ (default
                           127.0.0.1:${DASHBOARD_PORT}; 0 picks a free port); HOST must be loopback
  --inspect                show the manager's statechart in Stately's hosted inspector
                           (needs the internet; the log gives the link)
  --node-log-max-bytes BYTES
                           rotate a node's output file (nodes/gen-G/node-I.log) to
                           node-I.log.1 past this size; 0 never (default ${NODE_LOG_DEFAULTS.maxBytes})

Environment: HERD_TOKEN_FILE (as --token-file), HERD_AUTH_TIMEOUT_MS (ms a
connection has to send a valid hello when a token is set; default ${DEFAULT_AUTH_TIMEOUT_MS}),
HERD_NODE_LOG_CHECK_MS (how often node output sizes are checked; default ${NODE_LOG_DEFAULTS.checkMs}),
HERD_CGROUP=off (no cgroup layer of containment), HERD_SPAWN=child_process or
posix_spawn (start nodes through Node's child_process, or fail at start-up
without herd's native starter).

Prints "listening HOST:PORT" on stdout once it accepts connections.`;

/** A configuration the user must fix: printed with the usage, exit status 2. */
export class ConfigError extends Error {}

function int(name: string, value: string | undefined, fallback: number, min: number, max = 2 ** 31 - 1): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max) throw new ConfigError(`--${name} must be an integer from ${min} to ${max}, got "${value}"`);
  return n;
}

/** The first address in MANAGER_IPS that is assigned to this machine, else loopback. */
export function defaultHost(managerIps = process.env.MANAGER_IPS): string {
  const local = new Set(Object.values(os.networkInterfaces()).flatMap((list) => (list ?? []).map((a) => a.address)));
  const mine = (managerIps ?? '').split(',').map((s) => s.trim()).find((ip) => ip !== '' && local.has(ip));
  return mine ?? '127.0.0.1';
}

/** Where the manager keeps its state file unless told: /run/herd as root, else a per-user runtime dir. */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HERD_STATE_DIR) return path.resolve(env.HERD_STATE_DIR);
  if (process.getuid?.() === 0) return '/run/herd';
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'herd');
  return path.join('/tmp', `herd-${process.getuid?.() ?? 'user'}`);
}

/** Addresses that only this machine can reach: 127.0.0.0/8 and ::1 (in any spelling), and `localhost`. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  const loopback = new net.BlockList();
  loopback.addSubnet('127.0.0.0', 8, 'ipv4');
  loopback.addAddress('::1', 'ipv6');
  const kind = net.isIPv4(host) ? 'ipv4' : net.isIPv6(host) ? 'ipv6' : null;
  return kind !== null && loopback.check(host, kind);
}

/** The token in `file` (named `source` in messages); a warning if other users can read it. */
function readToken(file: string, source: string, warnings: string[]): string {
  let token: string;
  let mode: number;
  try {
    token = readFileSync(file, 'utf8').trim();
    mode = statSync(file).mode;
  } catch (err) {
    throw new ConfigError(`cannot read ${source} ${file}: ${(err as Error).message}`);
  }
  if (token === '') throw new ConfigError(`${source} ${file} is empty; put a secret in it, e.g. openssl rand -hex 32 > ${file}`);
  if ((mode & 0o044) !== 0) {
    const octal = (mode & 0o777).toString(8).padStart(4, '0');
    warnings.push(`${source} ${file} is readable by other users (mode ${octal}); whoever reads it can start and kill processes through this manager: chmod 600 ${file}`);
  }
  return token;
}

/** Without a token only loopback is safe to listen on, unless --insecure says the network is trusted. */
function checkExposure(host: string, token: string | null, insecure: boolean, warnings: string[]): void {
  if (token !== null || isLoopback(host)) return;
  const risk = `anyone who can reach ${host} could start and kill processes on this machine`;
  if (insecure) {
    warnings.push(`listening on ${host} without a token (--insecure): ${risk}`);
    return;
  }
  throw new ConfigError(
    `refusing to listen on ${host} without a token: ${risk}.\n` +
      `Make a token, copy the file to the controller too, and pass it:\n` +
      `  openssl rand -hex 32 > /etc/herd/token && chmod 600 /etc/herd/token\n` +
      `  herd manager --token-file /etc/herd/token ...   (or set HERD_TOKEN_FILE=/etc/herd/token)\n` +
      `Or listen on 127.0.0.1, or pass --insecure if every host that can reach ${host} is trusted.`,
  );
}

/** A duration in ms from the environment variable `name`, if set: a positive integer. */
function envMs(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const value = env[name];
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > 2 ** 31 - 1) throw new ConfigError(`${name} must be an integer from 1 to ${2 ** 31 - 1} (ms), got "${value}"`);
  return n;
}

/** `--dashboard` without a value (last, or before another flag) means the default port. */
function dashboardDefault(argv: string[]): string[] {
  return argv.map((a, i) => (a === '--dashboard' && (i + 1 === argv.length || argv[i + 1].startsWith('-')) ? `--dashboard=${DASHBOARD_PORT}` : a));
}

/** `--dashboard [HOST:]PORT`, HOST loopback only: the page has no authentication. */
function dashboardAddress(value: string | undefined): ManagerConfig['dashboard'] {
  if (value === undefined) return null;
  const m = /^(?:(?:\[([^\]]+)\]|([^:]+)):)?(\d+)$/.exec(value);
  if (!m) throw new ConfigError(`--dashboard takes [HOST:]PORT, e.g. 7080 or 127.0.0.1:7080, got "${value}"`);
  const host = m[1] ?? m[2] ?? '127.0.0.1';
  if (!isLoopback(host)) {
    const port = m[3] === '0' ? DASHBOARD_PORT : m[3];
    throw new ConfigError(
      `refusing to serve the dashboard on ${host}: it has no authentication, so it listens on loopback only.\n` +
        `To see it from another machine, serve it on --dashboard ${port} and tunnel to it: ssh -N -L ${DASHBOARD_PORT}:127.0.0.1:${port} <this host>, then open http://127.0.0.1:${DASHBOARD_PORT}/`,
    );
  }
  return { host, port: int('dashboard', m[3], DASHBOARD_PORT, 0, 65535) };
}

export function parseManagerArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): ManagerConfig & { help: boolean } {
  let values;
  try {
    ({ values } = parseArgs({
      args: dashboardDefault(argv),
      strict: true,
      allowPositionals: false,
      options: {
        host: { type: 'string' },
        port: { type: 'string' },
        'node-command': { type: 'string' },
        'node-arg': { type: 'string', multiple: true },
        'interface-port': { type: 'string' },
        'token-file': { type: 'string' },
        'log-dir': { type: 'string' },
        'max-frame': { type: 'string' },
        'max-nodes': { type: 'string' },
        'kill-grace-ms': { type: 'string' },
        'stats-interval-ms': { type: 'string' },
        'state-dir': { type: 'string' },
        insecure: { type: 'boolean' },
        'node-log-max-bytes': { type: 'string' },
        dashboard: { type: 'string' },
        inspect: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  const warnings: string[] = [];
  const host = values.host ?? defaultHost(env.MANAGER_IPS);
  const tokenFile = values['token-file'] ?? (env.HERD_TOKEN_FILE || undefined);
  const token = tokenFile !== undefined ? readToken(tokenFile, values['token-file'] !== undefined ? '--token-file' : 'HERD_TOKEN_FILE', warnings) : null;
  const insecure = values.insecure ?? false;
  if (!values.help) checkExposure(host, token, insecure, warnings);
  const limits = readLimits();
  return {
    help: values.help ?? false,
    host,
    port: int('port', values.port, DEFAULTS.port, 0, 65535),
    nodeCommand: values['node-command'] ?? EXAMPLE_NODE,
    nodeArgs: values['node-arg'] ?? [],
    interfacePort: int('interface-port', values['interface-port'], DEFAULTS.interfacePort, 1, 65535),
    token,
    logDir: path.resolve(values['log-dir'] ?? 'herd-logs'),
    maxFrame: int('max-frame', values['max-frame'], DEFAULTS.maxFrame, 64, 2 ** 31 - 1),
    maxNodes: int('max-nodes', values['max-nodes'], limits.maxNodes, 0),
    limits,
    stateDir: values['state-dir'] !== undefined ? path.resolve(values['state-dir']) : defaultStateDir(env),
    killGraceMs: int('kill-grace-ms', values['kill-grace-ms'], DEFAULTS.killGraceMs, 0),
    statsIntervalMs: int('stats-interval-ms', values['stats-interval-ms'], DEFAULTS.statsIntervalMs, 10),
    insecure,
    authTimeoutMs: envMs(env, 'HERD_AUTH_TIMEOUT_MS', DEFAULT_AUTH_TIMEOUT_MS),
    nodeLogMaxBytes: int('node-log-max-bytes', values['node-log-max-bytes'], NODE_LOG_DEFAULTS.maxBytes, 0, Number.MAX_SAFE_INTEGER),
    nodeLogCheckMs: envMs(env, 'HERD_NODE_LOG_CHECK_MS', NODE_LOG_DEFAULTS.checkMs),
    dashboard: dashboardAddress(values.dashboard),
    inspect: values.inspect ?? false,
    warnings,
  };
}
