// The TCP server: one Connection per socket; frames in, replies and events out.
// Data flows one way: socket -> FrameDecoder -> decodeBody -> validateRequest ->
// supervisor (manager actor) -> reply. A bad frame costs its sender an error
// reply, never the daemon or another connection.
//
// With a token, a connection is a stranger until its hello carries that token:
// a stranger gets UNAUTHENTICATED for everything else, may send only small
// frames, is closed after a few wrong tokens or when it has not authenticated
// in time, and its address has a budget of failed hellos shared by all its
// connections. Every connection, stranger or not, is held to a cap on the
// bytes it leaves unread and on the requests it has unanswered.

import { createHash, timingSafeEqual } from 'node:crypto';
import net from 'node:net';
import { BadMessage, decodeBody, encodeFrame, FrameDecoder, wired } from './codec';
import type { Chaos } from './chaos';
import type { Logger } from './logger';
import type { NodeOutput } from './nodeoutput';
import { pgidOf } from './proc';
import { Command, CommandResults, ErrorCode, ManagerEvent, ManagerIdentity, PROTOCOL_VERSION, RequestId, StatusResult, Topic, WireError } from './protocol';
import { FailureLimiter } from './ratelimit';
import type { Sampler } from './sampler';
import type { Supervisor } from './supervisor';
import type { Timeline } from './timeline';
import { validateRequest } from './validate';

export interface ServerOptions {
  host: string;
  port: number;
  maxFrame: number;
  maxNodes: number;
  interfacePort: number;
  token: string | null;
  identity: Omit<ManagerIdentity, 'address'>;
  supervisor: Supervisor;
  sampler: Sampler;
  /** The nodes' output files, for `logs`. */
  nodeOutput: NodeOutput;
  /** The generations' timeline files, for `timeline`. */
  timeline: Timeline;
  /** Fault injection, for `chaos` (without it, `chaos` is answered INTERNAL). */
  chaos?: Chaos;
  logger: Logger;
  /** Connections beyond this are answered LIMIT and closed. */
  maxConnections?: number;
  /** Requests one connection may have unanswered at once. */
  maxInFlight?: number;
  /** A connection that leaves this many bytes of replies and events unread is dropped. */
  maxBacklog?: number;
  /** With a token: a connection that has not authenticated this long after connecting is closed. */
  authTimeoutMs?: number;
  /** With a token: wrong tokens after which a connection is closed. */
  maxHelloFailures?: number;
  /** With a token: failed hellos per peer address, `burst` in a row then one per `refillMs`. */
  helloFailureLimit?: { burst: number; refillMs: number };
}

/** Defaults of the limits in ServerOptions (README, "Security"). */
export const SERVER_LIMITS = {
  maxConnections: 1024,
  maxInFlight: 1024,
  maxBacklog: 16 * 1024 * 1024,
  authTimeoutMs: 10_000,
  maxHelloFailures: 3,
  helloFailureLimit: { burst: 10, refillMs: 1000 },
  /** Largest frame before authentication: a hello is small, and a stranger must not make us buffer --max-frame. */
  maxStrangerFrame: 64 * 1024,
} as const;

/** How long a closed connection may linger for its peer to read the last reply before it is cut. */
const CLOSE_LINGER_MS = 2000;

const NEED_TOKEN = 'this manager requires a token: send hello with the token first';

type Result = Record<string, unknown>;
class RequestError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
    /** Close the connection once this error is sent. */
    readonly close = false,
  ) {
    super(message);
  }
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** The answer of a part that replies `{result}` or `{error}` (node output, timeline, chaos): its result, or the error thrown. */
function unwrap<T>(r: { result: T } | { error: WireError }): T {
  if ('error' in r) throw new RequestError(r.error.code, r.error.message);
  return r.result;
}

/** An address as a peer would write it: IPv4-mapped IPv6 (`::ffff:1.2.3.4`) unwrapped. */
const plainHost = (host: string) => (host.startsWith('::ffff:') && host.includes('.') ? host.slice(7) : host);

/** `host:port`, with IPv6 hosts in brackets. */
export function formatAddress(host: string, port: number): string {
  const h = plainHost(host);
  return h.includes(':') ? `[${h}]:${port}` : `${h}:${port}`;
}

export const isWildcard = (host: string) => host === '0.0.0.0' || host === '::';

export class ManagerServer {
  private readonly server: net.Server;
  private readonly connections = new Set<Connection>();
  /** The connections subscribed to each topic: an event is not offered to every node's connection. */
  private readonly subscribers = new Map<Topic, Set<Connection>>();
  /** The last status result, ready for the wire, and the manager snapshot it was read from. */
  private status: { snapshot: unknown; result: StatusResult } | null = null;
  /** Failed hellos per peer address, across all of its connections. */
  readonly helloFailures: FailureLimiter;
  address = '';

  constructor(readonly opts: ServerOptions) {
    this.helloFailures = new FailureLimiter(opts.helloFailureLimit ?? SERVER_LIMITS.helloFailureLimit);
    this.server = net.createServer((socket) => this.accept(socket));
    opts.supervisor.on('event', (event) => this.broadcast('nodes', event));
    opts.sampler.on('sample', (event) => this.broadcast('stats', event));
    opts.chaos?.on('action', (action) => this.broadcast('nodes', { event: 'chaos', ...action }));
  }

  /** Resolves with the bound `host:port`; rejects (EADDRINUSE, EACCES...) without side effects. */
  listen(): Promise<string> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: this.opts.host, port: this.opts.port, exclusive: true }, () => {
        this.server.off('error', reject);
        const addr = this.server.address() as net.AddressInfo;
        this.address = formatAddress(addr.address, addr.port);
        this.server.on('error', (err) => this.opts.logger.error(`listener error: ${err.message}`));
        resolve(this.address);
      });
    });
  }

  /** Stops accepting, closes every connection. */
  close(): Promise<void> {
    for (const c of this.connections) c.socket.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: net.Socket): void {
    const max = this.opts.maxConnections ?? SERVER_LIMITS.maxConnections;
    if (this.connections.size >= max) {
      this.opts.logger.debug(`refusing connection from ${formatAddress(socket.remoteAddress ?? '?', socket.remotePort ?? 0)}: ${max} connections already`);
      socket.on('error', () => {}); // a reset from the refused peer is no concern of ours
      socket.resume(); // discard its input, so that its FIN is seen and the socket closes
      endThenDestroy(socket, encodeFrame({ id: null, ok: false, error: { code: 'LIMIT', message: `the manager already serves ${max} connections; close idle clients and retry` } }));
      return;
    }
    const conn = new Connection(socket, this);
    this.connections.add(conn);
    socket.on('close', () => {
      this.connections.delete(conn);
      for (const t of conn.topics) this.subscribers.get(t)?.delete(conn);
    });
  }

  /**
   * The status result, built again only when the manager's snapshot has changed
   * (a new one is made on every change): controllers poll it, and with 1000 nodes
   * building and converting it was most of a round trip.
   */
  statusResult(): StatusResult {
    const snapshot = this.opts.supervisor.snapshot();
    if (this.status?.snapshot !== snapshot) this.status = { snapshot, result: wired(this.opts.supervisor.status()) };
    return this.status.result;
  }

  /** Adds topics to a connection's subscription; returns all it has. */
  subscribe(conn: Connection, topics: Topic[]): Topic[] {
    for (const t of topics) {
      conn.topics.add(t);
      let set = this.subscribers.get(t);
      if (!set) this.subscribers.set(t, (set = new Set()));
      set.add(conn);
    }
    return [...conn.topics];
  }

  private broadcast(topic: Topic, event: ManagerEvent): void {
    const to = this.subscribers.get(topic);
    if (!to || to.size === 0) return;
    // Encoded once for all subscribers: a stats event of 1000 nodes takes about 1.4 ms to encode.
    const frame = encodeFrame(event);
    for (const c of to) c.sendEvent(frame);
  }
}

/** Half-closes after `last`, and cuts the socket if the peer has not closed its side in time. */
function endThenDestroy(socket: net.Socket, last: Buffer): void {
  if (socket.destroyed || socket.writableEnded) return;
  socket.end(last);
  setTimeout(() => socket.destroy(), CLOSE_LINGER_MS).unref();
}

class Connection {
  private readonly decoder: FrameDecoder;
  private authenticated: boolean;
  private inFlight = 0;
  private helloFailures = 0;
  /** Set once the connection is being closed: no further frame is read. */
  private closing = false;
  private readonly authTimer?: NodeJS.Timeout;
  readonly topics = new Set<Topic>();
  private readonly peer: string;
  /** The peer's address without port: the key of its failed-hello budget. */
  private readonly peerHost: string;

  constructor(readonly socket: net.Socket, private readonly server: ManagerServer) {
    const { opts } = server;
    this.authenticated = opts.token === null;
    this.decoder = new FrameDecoder(this.authenticated ? opts.maxFrame : Math.min(opts.maxFrame, SERVER_LIMITS.maxStrangerFrame));
    this.peerHost = plainHost(socket.remoteAddress ?? '?');
    this.peer = formatAddress(socket.remoteAddress ?? '?', socket.remotePort ?? 0);
    if (!this.authenticated) {
      const ms = opts.authTimeoutMs ?? SERVER_LIMITS.authTimeoutMs;
      this.authTimer = setTimeout(() => this.authExpired(ms), ms).unref();
    }
    socket.setNoDelay(true);
    socket.on('data', (chunk) => this.onData(chunk));
    socket.on('close', () => clearTimeout(this.authTimer));
    // Peers vanish (ECONNRESET, EPIPE): nothing to do but let the socket close.
    socket.on('error', (err) => opts.logger.debug(`connection ${this.peer}: ${err.message}`));
  }

  private get opts(): ServerOptions {
    return this.server.opts;
  }

  private send(message: unknown): void {
    this.sendFrame(encodeFrame(message));
  }

  private sendFrame(frame: Buffer): void {
    if (this.socket.destroyed || this.socket.writableEnded) return;
    // A peer that does not read (a stalled subscriber, a client pipelining
    // without reading replies) must not grow our memory: drop it.
    const max = this.opts.maxBacklog ?? SERVER_LIMITS.maxBacklog;
    if (this.socket.writableLength > max) {
      this.opts.logger.warn(`dropping connection ${this.peer}: it left ${this.socket.writableLength} bytes of replies and events unread (limit ${max}); a client must keep reading its socket`);
      this.closing = true;
      this.socket.destroy();
      return;
    }
    this.socket.write(frame);
  }

  private sendError(id: RequestId | null, code: ErrorCode, message: string, details?: unknown): void {
    this.send({ id, ok: false, error: { code, message, details } });
  }

  /** Sends a last error, then closes; nothing more is read from this peer. */
  private closeWith(id: RequestId | null, code: ErrorCode, message: string): void {
    this.closing = true;
    endThenDestroy(this.socket, encodeFrame({ id, ok: false, error: { code, message } }));
  }

  /** An event, already encoded by the broadcast. */
  sendEvent(frame: Buffer): void {
    this.sendFrame(frame);
  }

  private onData(chunk: Buffer): void {
    if (this.closing) return;
    this.decoder.append(chunk);
    // One frame at a time: a hello read here raises the frame limit for the next one.
    for (let frame = this.decoder.next(); frame && !this.closing; frame = this.decoder.next()) {
      if (frame.kind === 'frame') {
        this.onFrame(frame.body);
        continue;
      }
      const limit = this.decoder.maxFrame;
      if (!this.authenticated && frame.length > 0 && frame.length <= this.opts.maxFrame) {
        this.opts.logger.warn(`closing connection ${this.peer}: a ${frame.length}-byte frame before hello`);
        this.closeWith(null, 'UNAUTHENTICATED', `${NEED_TOKEN}; until then frames are limited to ${limit} bytes, and this ${frame.length}-byte one closed the connection`);
        return;
      }
      this.opts.logger.warn(`closing connection ${this.peer}: frame length ${frame.length} outside 1..${limit}`);
      this.closeWith(null, 'FRAME_TOO_LARGE', `frame length ${frame.length} is outside 1..${limit} bytes (--max-frame); the connection is closed`);
      return;
    }
  }

  /** An error for a frame that never became a command. A stranger learns only that it needs the token. */
  private refuse(id: RequestId | null, code: ErrorCode, message: string): void {
    if (this.authenticated) this.sendError(id, code, message);
    else this.sendError(id, 'UNAUTHENTICATED', NEED_TOKEN);
  }

  private onFrame(body: Buffer): void {
    let message: unknown;
    try {
      message = decodeBody(body);
    } catch (err) {
      if (!(err instanceof BadMessage)) throw err;
      this.refuse(null, 'BAD_MESSAGE', err.message);
      return;
    }
    const v = validateRequest(message);
    if (!v.ok) {
      this.refuse(v.id, v.code, v.message);
      return;
    }
    const maxInFlight = this.opts.maxInFlight ?? SERVER_LIMITS.maxInFlight;
    if (this.inFlight >= maxInFlight) {
      this.sendError(v.id, 'LIMIT', `${maxInFlight} requests are already unanswered on this connection; wait for replies`);
      return;
    }
    this.inFlight++;
    this.handle(v.command)
      .then(
        (result) => this.send({ id: v.id, ok: true, ...result }),
        (err: unknown) => {
          if (err instanceof RequestError) {
            if (err.close) return this.closeWith(v.id, err.code, err.message);
            return this.sendError(v.id, err.code, err.message, err.details);
          }
          this.opts.logger.error(`internal error handling ${v.command.cmd} from ${this.peer}: ${(err as Error)?.stack ?? String(err)}`);
          this.sendError(v.id, 'INTERNAL', `internal error: ${(err as Error)?.message ?? String(err)}; the manager logged it and keeps serving`);
        },
      )
      .finally(() => this.inFlight--);
  }

  private authExpired(ms: number): void {
    if (this.authenticated || this.closing) return;
    this.opts.logger.info(`closing connection ${this.peer}: no valid hello within ${ms} ms`);
    this.closeWith(null, 'UNAUTHENTICATED', `no valid hello within ${ms} ms of connecting; the connection is closed. Send hello with the token first`);
  }

  private async handle(command: Command): Promise<Result> {
    const { opts } = this;
    if (command.cmd === 'hello') return this.hello(command.token);
    if (!this.authenticated) throw new RequestError('UNAUTHENTICATED', NEED_TOKEN);
    switch (command.cmd) {
      case 'ping':
        return { pong: true, time: Date.now() } satisfies CommandResults['ping'];
      case 'status':
        return { ...this.server.statusResult() };
      case 'stats':
        return { ...opts.sampler.latest() };
      case 'subscribe':
        return { topics: this.server.subscribe(this, command.topics) };
      case 'logs':
        return { ...unwrap(await opts.nodeOutput.read(command, opts.supervisor.generation().generation)) };
      case 'timeline':
        return { ...unwrap(await opts.timeline.page(command)) };
      case 'chaos':
        if (!opts.chaos) throw new RequestError('INTERNAL', 'this manager runs without fault injection');
        return { ...unwrap(opts.chaos.command(command)) };
      case 'connect':
        return this.forward({ type: 'connect', pid: command.pid, pgid: pgidOf(command.pid), nodeId: command.nodeId, at: Date.now() });
      case 'reset':
        return this.forward({ type: 'reset' });
      case 'kill':
        return this.forward({ type: 'kill', ...('pid' in command ? { pid: command.pid } : { index: command.index }) });
      case 'generate': {
        if (command.n > opts.maxNodes) {
          throw new RequestError('LIMIT', `n = ${command.n} exceeds this manager's limit of ${opts.maxNodes} nodes (--max-nodes)`);
        }
        // Bound to a wildcard address, nodes get the address their controller reached.
        const machineIp = isWildcard(opts.host) ? plainHost(this.socket.localAddress ?? opts.host) : opts.host;
        const controller = formatAddress(this.socket.remoteAddress ?? '127.0.0.1', opts.interfacePort);
        const wait = command.wait ?? 'spawned';
        const deadline = wait === 'connected' ? command.timeoutMs ?? 30000 : undefined;
        return this.forward(
          { type: 'generate', n: command.n, wait, interface: command.interface ?? controller, machineIp },
          deadline,
        );
      }
    }
  }

  private async forward(event: Parameters<Supervisor['request']>[0], deadlineMs?: number): Promise<Result> {
    const reply = await this.opts.supervisor.request(event, deadlineMs);
    if ('error' in reply) throw new RequestError(reply.error.code, reply.error.message, reply.error.details);
    return reply.result;
  }

  private hello(token: string | undefined): Result {
    const expected = this.opts.token;
    if (expected !== null) this.checkToken(expected, token);
    const result: CommandResults['hello'] = { protocol: PROTOCOL_VERSION, manager: { ...this.opts.identity, address: this.server.address } };
    return { ...result };
  }

  /** Throws UNAUTHENTICATED unless `token` is the expected one; counts and limits failures. */
  private checkToken(expected: string, token: string | undefined): void {
    const limiter = this.server.helloFailures;
    // Checked before the token: a peer over its budget learns nothing, even from the right guess.
    const waitMs = limiter.retryAfter(this.peerHost);
    if (waitMs > 0) {
      this.opts.logger.debug(`refused hello from ${this.peer}: its address is over its failed-hello budget`);
      this.closing = true;
      throw new RequestError('UNAUTHENTICATED', `too many failed hellos from ${this.peerHost}; wait ${Math.ceil(waitMs / 1000)} s before trying again. The connection is closed`, undefined, true);
    }
    // Compare digests: constant time, and no length leak.
    if (token !== undefined && timingSafeEqual(digest(token), digest(expected))) {
      this.authenticated = true;
      clearTimeout(this.authTimer);
      this.decoder.maxFrame = this.opts.maxFrame;
      return;
    }
    const overBudget = limiter.fail(this.peerHost);
    const max = this.opts.maxHelloFailures ?? SERVER_LIMITS.maxHelloFailures;
    const close = ++this.helloFailures >= max || overBudget;
    // Decided now, not when the reply goes out: frames already received must not get more guesses.
    if (close) this.closing = true;
    const why = token === undefined ? 'no token' : 'wrong token';
    this.opts.logger.warn(
      `rejected hello from ${this.peer}: ${why}${overBudget ? `; ${this.peerHost} used up its failed-hello budget and must wait` : ''}${close ? '; connection closed' : ''}`,
    );
    const advice = token === undefined ? 'this manager requires a token; send it in hello' : 'wrong token';
    throw new RequestError('UNAUTHENTICATED', close ? `${advice}; after ${this.helloFailures} failed hello(s) the connection is closed` : advice, undefined, close);
  }
}
