// Configuration of `herd manager`: the fixed command line of PROTOCOL.md, its
// defaults, MANAGER_IPS, and the token file.

import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
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
  maxNodes: number;
  killGraceMs: number;
  statsIntervalMs: number;
}

export const EXAMPLE_NODE = path.resolve(__dirname, '../example/node.js');
export const DEFAULT_MAX_NODES = 5000;

export const MANAGER_USAGE = `usage: herd manager [--host ADDR] [--port N] [--node-command PATH] [--node-arg=ARG]...
                    [--interface-port N] [--token-file FILE] [--log-dir DIR]
                    [--max-frame BYTES] [--max-nodes N] [--kill-grace-ms MS]
                    [--stats-interval-ms MS]

  --host ADDR              address to bind (default: the first address in MANAGER_IPS
                           that belongs to this machine, else 127.0.0.1)
  --port N                 TCP port (default ${DEFAULTS.port}; 0 picks a free one)
  --node-command PATH      program started for each node (default: the bundled example node)
  --node-arg=ARG           argument before the two the manager appends (repeatable;
                           use the = form for values that start with -)
  --interface-port N       controller port given to nodes when generate names no
                           interface (default ${DEFAULTS.interfacePort})
  --token-file FILE        require clients to send this token in hello
  --log-dir DIR            manager.log, stats.jsonl and node output (default ./herd-logs)
  --max-frame BYTES        largest accepted frame (default ${DEFAULTS.maxFrame})
  --max-nodes N            largest generate accepted (default ${DEFAULT_MAX_NODES})
  --kill-grace-ms MS       SIGTERM to SIGKILL delay when killing a node (default ${DEFAULTS.killGraceMs})
  --stats-interval-ms MS   CPU sampling interval (default ${DEFAULTS.statsIntervalMs})

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

function readToken(file: string): string {
  let token: string;
  try {
    token = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new ConfigError(`cannot read --token-file ${file}: ${(err as Error).message}`);
  }
  if (token === '') throw new ConfigError(`--token-file ${file} is empty; put a secret in it, e.g. openssl rand -hex 32 > ${file}`);
  return token;
}

export function parseManagerArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): ManagerConfig & { help: boolean } {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
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
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  return {
    help: values.help ?? false,
    host: values.host ?? defaultHost(env.MANAGER_IPS),
    port: int('port', values.port, DEFAULTS.port, 0, 65535),
    nodeCommand: values['node-command'] ?? EXAMPLE_NODE,
    nodeArgs: values['node-arg'] ?? [],
    interfacePort: int('interface-port', values['interface-port'], DEFAULTS.interfacePort, 1, 65535),
    token: values['token-file'] !== undefined ? readToken(values['token-file']) : null,
    logDir: path.resolve(values['log-dir'] ?? 'herd-logs'),
    maxFrame: int('max-frame', values['max-frame'], DEFAULTS.maxFrame, 64, 2 ** 31 - 1),
    maxNodes: int('max-nodes', values['max-nodes'], DEFAULT_MAX_NODES, 0),
    killGraceMs: int('kill-grace-ms', values['kill-grace-ms'], DEFAULTS.killGraceMs, 0),
    statsIntervalMs: int('stats-interval-ms', values['stats-interval-ms'], DEFAULTS.statsIntervalMs, 10),
  };
}
