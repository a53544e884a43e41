// Typed promise client for one manager connection (docs/PROTOCOL.md, version 1).
// Requests are pipelined: replies are matched by id, whatever order they come in.

import { EventEmitter } from 'node:events';
import net from 'node:net';
import { decodeBody, encodeFrame, FrameDecoder } from './codec';
import {
  ChaosParams, CommandName, CommandParams, CommandResults, DEFAULTS, ErrorCode, GenerateParams, HelloParams,
  KillParams, LogsParams, ManagerEvent, ManagerIdentity, TimelineParams, Topic,
} from './protocol';
import { parseAddress } from './targets';

/** Failures the client detects itself, beside the manager's own error codes (START_FAILED: `herd up`). */
export type ClientErrorCode = 'UNREACHABLE' | 'CLOSED' | 'CLIENT_TIMEOUT' | 'BAD_REPLY' | 'START_FAILED';

export class HerdError extends Error {
  override name = 'HerdError';
  constructor(
    readonly code: ErrorCode | ClientErrorCode,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

export interface ConnectOptions {
  /** Sent in a `hello` right after connecting (as is `client`). */
  token?: string;
  client?: string;
  connectTimeoutMs?: number;
  /** Abandons the connection, at any point (closing the socket at once; pending requests fail with CLOSED): for a caller whose own deadline ran out. */
  signal?: AbortSignal;
  /** Largest reply frame accepted. Replies (status of a big herd) may exceed the manager's own inbound limit. */
  maxFrame?: number;
}

export interface RequestOptions {
  /** Client-side deadline; 0 or Infinity waits forever. */
  timeoutMs?: number;
}

export const CONNECT_TIMEOUT_MS = 5000;
export const REQUEST_TIMEOUT_MS = 60_000;
/** Slack over the server's own wait: the reset before spawning and queued commands come first. */
const WAIT_MARGIN_MS = 30_000;

interface Pending {
  resolve: (result: unknown) => void;
  reject: (err: HerdError) => void;
  timer?: NodeJS.Timeout;
}

export interface HerdClient {
  on(event: 'event', listener: (ev: ManagerEvent) => void): this;
  /** `err` is set when the connection was lost rather than closed by `close()`. */
  on(event: 'close', listener: (err?: HerdError) => void): this;
}

export class HerdClient extends EventEmitter {
  /** Filled in by `hello()`. */
  manager?: ManagerIdentity;
  private nextId = 1;
  // Insertion-ordered, so the first entry is the oldest request (for id-null errors).
  private readonly pending = new Map<number, Pending>();
  private readonly decoder: FrameDecoder;
  private closing = false;
  private closed = false;
  private failure?: HerdError;

  private constructor(
    private readonly socket: net.Socket,
    /** Canonical `host:port` of the manager. */
    readonly address: string,
    maxFrame: number,
  ) {
    super();
    this.decoder = new FrameDecoder(maxFrame);
    socket.setNoDelay(true);
    socket.on('data', (chunk) => this.onData(chunk));
    socket.on('error', (err) => (this.failure ??= new HerdError('CLOSED', `connection lost: ${err.message}`)));
    socket.on('close', () => this.onClose());
  }

  /** Connects to `host:port` or `[v6]:port` (port defaults to 7070); sends `hello` if a token or client name is given. */
  static async connect(address: string, opts: ConnectOptions = {}): Promise<HerdClient> {
    let target;
    try {
      target = parseAddress(address);
    } catch (err) {
      throw new HerdError('BAD_ARGUMENT', (err as Error).message);
    }
    const timeoutMs = opts.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
    const { signal } = opts;
    const abandoned = () => new HerdError('CLOSED', `connection to ${target.address} abandoned`);
    if (signal?.aborted) throw abandoned();
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: target.host, port: target.port });
      const fail = (err: HerdError) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        s.destroy();
        reject(err);
      };
      const onAbort = () => fail(abandoned());
      const timer = setTimeout(() => fail(new HerdError('UNREACHABLE', `no connection within ${timeoutMs} ms`)), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      s.once('error', (err) => fail(new HerdError('UNREACHABLE', err.message)));
      s.once('connect', () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        s.removeAllListeners('error');
        resolve(s);
      });
    });
    const client = new HerdClient(socket, target.address, opts.maxFrame ?? 64 * DEFAULTS.maxFrame);
    if (signal) {
      // A manager that accepts but never answers (the hello, or a request) must not hold the caller past its deadline.
      const onAbort = () => {
        client.failure ??= abandoned();
        socket.destroy();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      socket.once('close', () => signal.removeEventListener('abort', onAbort));
    }
    if (opts.token !== undefined || opts.client !== undefined) {
      try {
        await client.hello({ token: opts.token, client: opts.client });
      } catch (err) {
        await client.close();
        throw err;
      }
    }
    return client;
  }

  request<C extends CommandName>(cmd: C, params: CommandParams[C], opts: RequestOptions = {}): Promise<CommandResults[C]> {
    if (this.closing || this.closed) return Promise.reject(new HerdError('CLOSED', `connection to ${this.address} is closed`));
    const id = this.nextId++;
    const frame = encodeFrame({ id, cmd, ...params });
    const timeoutMs = opts.timeoutMs ?? defaultTimeout(cmd, params);
    return new Promise((resolve, reject) => {
      const entry: Pending = { resolve: resolve as (r: unknown) => void, reject };
      if (timeoutMs > 0 && Number.isFinite(timeoutMs)) {
        entry.timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new HerdError('CLIENT_TIMEOUT', `no reply to ${cmd} within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      this.pending.set(id, entry);
      this.socket.write(frame);
    });
  }

  async hello(params: HelloParams = {}): Promise<CommandResults['hello']> {
    const result = await this.request('hello', params);
    this.manager = result.manager;
    return result;
  }
  ping() {
    return this.request('ping', {});
  }
  generate(n: number, opts: Omit<GenerateParams, 'n'> = {}, req?: RequestOptions) {
    return this.request('generate', { n, ...opts }, req);
  }
  /** The `connect` command (what a node sends to say it is up). */
  connectNode(pid: number, nodeId?: unknown) {
    return this.request('connect', nodeId === undefined ? { pid } : { pid, nodeId });
  }
  status() {
    return this.request('status', {});
  }
  reset(req?: RequestOptions) {
    return this.request('reset', {}, req);
  }
  kill(target: KillParams, req?: RequestOptions) {
    return this.request('kill', target, req);
  }
  stats() {
    return this.request('stats', {});
  }
  subscribe(topics: Topic[]) {
    return this.request('subscribe', { topics });
  }
  /** A page of node `index`'s output (herd's `logs`); without `offset`, its last `maxBytes`. */
  logs(index: number, opts: Omit<LogsParams, 'index'> = {}) {
    return this.request('logs', { index, ...opts });
  }

  /** A page of a generation's timeline JSONL (herd's `timeline`); default: the current generation from offset 0. */
  timeline(params: TimelineParams = {}) {
    return this.request('timeline', params);
  }

  /** Starts fault injection on the manager (herd's `chaos`), or stops it with `{stop: true}`. */
  chaos(params: ChaosParams) {
    return this.request('chaos', params);
  }

  /** Closes the connection; requests still pending are rejected with CLOSED. */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closing = true;
    return new Promise((resolve) => {
      // Half-close politely, but don't wait on a manager that never closes its side.
      const timer = setTimeout(() => this.socket.destroy(), 1000);
      this.socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.socket.end();
    });
  }

  private onData(chunk: Buffer): void {
    for (const frame of this.decoder.push(chunk)) {
      if (frame.kind === 'bad-length') return this.fail(`manager sent a frame of ${frame.length} bytes`);
      let msg: unknown;
      try {
        msg = decodeBody(frame.body);
      } catch (err) {
        return this.fail(`manager sent ${(err as Error).message}`);
      }
      if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) return this.fail('manager sent a message that is not a map');
      this.dispatch(msg as Record<string, unknown>);
    }
  }

  private dispatch(msg: Record<string, unknown>): void {
    if (!('id' in msg) && typeof msg.event === 'string') {
      this.emit('event', msg as unknown as ManagerEvent);
      return;
    }
    // id null: the manager could not tell which request it answers (BAD_MESSAGE,
    // FRAME_TOO_LARGE); requests are read in order, so it is the oldest one.
    const key = msg.id === null ? this.pending.keys().next().value : Number(msg.id);
    const entry = key === undefined ? undefined : this.pending.get(key);
    if (!entry) return; // a reply to a request that already timed out
    this.pending.delete(key!);
    clearTimeout(entry.timer);
    if (msg.ok === true) {
      const result = { ...msg };
      delete result.id;
      delete result.ok;
      entry.resolve(result);
    } else if (msg.ok === false && msg.error !== null && typeof msg.error === 'object') {
      const e = msg.error as Record<string, unknown>;
      entry.reject(new HerdError(String(e.code) as ErrorCode, String(e.message ?? ''), e.details));
    } else {
      entry.reject(new HerdError('BAD_REPLY', 'manager sent a reply with neither ok:true nor an error'));
    }
  }

  /** The stream can't be trusted any more: drop the connection (pending requests fail with this). */
  private fail(message: string): void {
    this.failure ??= new HerdError('BAD_REPLY', message);
    this.socket.destroy();
  }

  private onClose(): void {
    this.closed = true;
    const err = this.closing && !this.failure
      ? new HerdError('CLOSED', 'connection closed by client')
      : (this.failure ?? new HerdError('CLOSED', 'connection closed by manager'));
    for (const entry of this.pending.values()) {
      clearTimeout(entry.timer);
      entry.reject(err);
    }
    this.pending.clear();
    this.emit('close', this.closing && !this.failure ? undefined : err);
  }
}

/** A `wait: "connected"` generate must outlast the server's own timeout, or we'd give up on a success. */
function defaultTimeout(cmd: CommandName, params: unknown): number {
  if (cmd !== 'generate') return REQUEST_TIMEOUT_MS;
  const p = params as GenerateParams;
  const serverWait = p.wait === 'connected' ? (p.timeoutMs ?? DEFAULTS.waitTimeoutMs) : 0;
  return Math.max(REQUEST_TIMEOUT_MS, serverWait + WAIT_MARGIN_MS);
}
