// Request validation: the edge between untrusted decoded MessagePack and typed
// commands. Nothing past this point re-checks a request.
//
// Only own properties of the message are read, and `cmd` is looked up in a Map
// of parsers, so keys such as `__proto__`, `constructor` or `toString` can
// neither reach dispatch nor read through the prototype chain.

import { MAX_CHUNK_BYTES } from './filechunk';
import { CHAOS_MIN_EVERY_MS, Command, COMMANDS, CommandName, ErrorCode, LOGS_MAX_BYTES, RequestId, TOPICS, Topic, WAIT_MODES, WaitMode } from './protocol';

export type Validated =
  | { ok: true; id: RequestId; command: Command }
  | { ok: false; id: RequestId | null; code: ErrorCode; message: string };

const UINT64_MAX = 2n ** 64n - 1n;
const UINT32_MAX = 2 ** 32 - 1;

function isRequestId(v: unknown): v is RequestId {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0;
  return typeof v === 'bigint' && v >= 0n && v <= UINT64_MAX;
}

function isUint(v: unknown, max = UINT32_MAX): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;
}

type Message = Record<string, unknown>;

/** `msg[name]` if it is the message's own property, else undefined. */
const own = (msg: Message, name: string): unknown => (Object.prototype.hasOwnProperty.call(msg, name) ? msg[name] : undefined);

class BadArgument extends Error {}

function uint(msg: Message, name: string, opts: { optional?: boolean; max?: number } = {}): number | undefined {
  const v = own(msg, name);
  if (v === undefined && opts.optional) return undefined;
  if (!isUint(v, opts.max)) throw new BadArgument(`${name} must be an unsigned integer${opts.max !== undefined ? ` <= ${opts.max}` : ''}, got ${describe(v)}`);
  return v;
}

function str(msg: Message, name: string): string | undefined {
  const v = own(msg, name);
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new BadArgument(`${name} must be a string, got ${describe(v)}`);
  return v;
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'nil';
  if (typeof v === 'string') return `"${v.length > 40 ? `${v.slice(0, 40)}...` : v}"`;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return `${typeof v} ${String(v)}`;
  return Array.isArray(v) ? 'an array' : typeof v;
}

/** `host:port` with a port, IPv6 hosts in brackets. */
export function parseHostPort(s: string): { host: string; port: number } | null {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(s);
  if (!m) return null;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return null;
  return { host: m[1] ?? m[2], port };
}

type Parser = (msg: Message) => Command;
const noParams = (cmd: 'ping' | 'status' | 'reset' | 'stats'): Parser => () => ({ cmd }) as Command;

/** The command table: the only way from a `cmd` string to a command. */
const PARSERS: ReadonlyMap<string, Parser> = new Map<CommandName, Parser>([
  ['hello', (msg) => ({ cmd: 'hello', token: str(msg, 'token'), client: str(msg, 'client') })],
  ['ping', noParams('ping')],
  ['status', noParams('status')],
  ['reset', noParams('reset')],
  ['stats', noParams('stats')],
  [
    'generate',
    (msg) => {
      const n = uint(msg, 'n')!;
      const wait = own(msg, 'wait') ?? 'spawned';
      if (!WAIT_MODES.includes(wait as WaitMode)) throw new BadArgument(`wait must be "spawned" or "connected", got ${describe(wait)}`);
      const timeoutMs = uint(msg, 'timeoutMs', { optional: true });
      const iface = str(msg, 'interface');
      if (iface !== undefined && !parseHostPort(iface)) throw new BadArgument(`interface must be "host:port" (IPv6 as "[addr]:port"), got ${describe(iface)}`);
      return { cmd: 'generate', n, wait: wait as WaitMode, timeoutMs, interface: iface };
    },
  ],
  ['connect', (msg) => ({ cmd: 'connect', pid: uint(msg, 'pid', { max: 2 ** 22 })!, nodeId: own(msg, 'nodeId') })],
  [
    'kill',
    (msg) => {
      const hasPid = own(msg, 'pid') !== undefined;
      const hasIndex = own(msg, 'index') !== undefined;
      if (hasPid === hasIndex) throw new BadArgument('kill takes exactly one of pid or index');
      return hasPid ? { cmd: 'kill', pid: uint(msg, 'pid')! } : { cmd: 'kill', index: uint(msg, 'index')! };
    },
  ],
  [
    'subscribe',
    (msg) => {
      const topics = own(msg, 'topics');
      if (!Array.isArray(topics) || !topics.every((t) => TOPICS.includes(t as Topic))) {
        throw new BadArgument(`topics must be an array of ${TOPICS.map((t) => `"${t}"`).join(', ')}, got ${describe(topics)}`);
      }
      return { cmd: 'subscribe', topics: [...new Set(topics as Topic[])] };
    },
  ],
  [
    'logs',
    (msg) => ({
      cmd: 'logs',
      index: uint(msg, 'index')!,
      generation: uint(msg, 'generation', { optional: true }),
      offset: uint(msg, 'offset', { optional: true, max: Number.MAX_SAFE_INTEGER }),
      maxBytes: uint(msg, 'maxBytes', { optional: true, max: LOGS_MAX_BYTES }),
    }),
  ],
  [
    'chaos',
    (msg) => {
      if (own(msg, 'stop') !== undefined) {
        if (own(msg, 'stop') !== true) throw new BadArgument(`stop must be true, got ${describe(own(msg, 'stop'))}`);
        return { cmd: 'chaos', stop: true };
      }
      const kill = uint(msg, 'kill')!;
      if (kill === 0) throw new BadArgument('kill must be at least 1 (nodes per round)');
      const everyMs = uint(msg, 'everyMs')!;
      if (everyMs < CHAOS_MIN_EVERY_MS) throw new BadArgument(`everyMs must be at least ${CHAOS_MIN_EVERY_MS}, got ${everyMs}`);
      return { cmd: 'chaos', kill, everyMs, forMs: uint(msg, 'forMs', { optional: true }), seed: uint(msg, 'seed', { optional: true }) };
    },
  ],
  [
    'timeline',
    (msg) => {
      const maxBytes = uint(msg, 'maxBytes', { optional: true, max: MAX_CHUNK_BYTES });
      if (maxBytes === 0) throw new BadArgument('maxBytes must be at least 1');
      return {
        cmd: 'timeline',
        generation: uint(msg, 'generation', { optional: true }),
        offset: uint(msg, 'offset', { optional: true, max: Number.MAX_SAFE_INTEGER }),
        maxBytes,
      };
    },
  ],
]);

/** Checks one decoded message against the contract. */
export function validateRequest(msg: unknown): Validated {
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg) || msg instanceof Uint8Array) {
    return { ok: false, id: null, code: 'BAD_MESSAGE', message: `a request must be a map, got ${describe(msg)}` };
  }
  const m = msg as Message;
  const rawId = own(m, 'id');
  const id = isRequestId(rawId) ? rawId : null;
  if (id === null) return { ok: false, id: null, code: 'BAD_MESSAGE', message: `id must be an unsigned integer, got ${describe(rawId)}` };
  const cmd = own(m, 'cmd');
  if (typeof cmd !== 'string') return { ok: false, id, code: 'BAD_MESSAGE', message: `cmd must be a string, got ${describe(cmd)}` };
  const parse = PARSERS.get(cmd);
  if (parse === undefined) {
    return { ok: false, id, code: 'UNKNOWN_COMMAND', message: `unknown command ${describe(cmd)}; commands are ${COMMANDS.join(', ')}` };
  }
  try {
    return { ok: true, id, command: parse(m) };
  } catch (err) {
    if (err instanceof BadArgument) return { ok: false, id, code: 'BAD_ARGUMENT', message: err.message };
    throw err;
  }
}
