// The TCP server: one Connection per socket; frames in, replies and events out.
// Data flows one way: socket -> FrameDecoder -> decodeBody -> validateRequest ->
// supervisor (manager actor) -> reply. A bad frame costs its sender an error
// reply, never the daemon or another connection.

import { createHash, timingSafeEqual } from 'node:crypto';
import net from 'node:net';
import { BadMessage, decodeBody, encodeFrame, FrameDecoder } from './codec';
import type { Logger } from './logger';
import { pgidOf } from './proc';
import { Command, CommandResults, ErrorCode, ManagerEvent, ManagerIdentity, PROTOCOL_VERSION, RequestId, Topic } from './protocol';
import type { Sampler } from './sampler';
import type { Supervisor } from './supervisor';
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
  logger: Logger;
  /** Connections beyond this are answered LIMIT and closed. */
  maxConnections?: number;
  /** Requests one connection may have unanswered at once. */
  maxInFlight?: number;
  /** A subscriber that lets this many bytes of events pile up unread is dropped. */
  maxBacklog?: number;
}

type Result = Record<string, unknown>;
class RequestError extends Error {
  constructor(readonly code: ErrorCode, message: string, readonly details?: unknown) {
    super(message);
  }
}

const digest = (s: string) => createHash('sha256').update(s).digest();

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
  address = '';

  constructor(readonly opts: ServerOptions) {
    this.server = net.createServer((socket) => this.accept(socket));
    opts.supervisor.on('event', (event) => this.broadcast('nodes', event));
    opts.sampler.on('sample', (event) => this.broadcast('stats', event));
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
    const max = this.opts.maxConnections ?? 1024;
    if (this.connections.size >= max) {
      socket.end(encodeFrame({ id: null, ok: false, error: { code: 'LIMIT', message: `the manager already serves ${max} connections; close idle clients and retry` } }));
      return;
    }
    const conn = new Connection(socket, this);
    this.connections.add(conn);
    socket.on('close', () => this.connections.delete(conn));
  }

  private broadcast(topic: Topic, event: ManagerEvent): void {
    for (const c of this.connections) if (c.topics.has(topic)) c.sendEvent(event);
  }
}

class Connection {
  private readonly decoder: FrameDecoder;
  private authenticated: boolean;
  private inFlight = 0;
  readonly topics = new Set<Topic>();
  private readonly peer: string;

  constructor(readonly socket: net.Socket, private readonly server: ManagerServer) {
    const { opts } = server;
    this.decoder = new FrameDecoder(opts.maxFrame);
    this.authenticated = opts.token === null;
    this.peer = formatAddress(socket.remoteAddress ?? '?', socket.remotePort ?? 0);
    socket.setNoDelay(true);
    socket.on('data', (chunk) => this.onData(chunk));
    // Peers vanish (ECONNRESET, EPIPE): nothing to do but let the socket close.
    socket.on('error', (err) => opts.logger.debug(`connection ${this.peer}: ${err.message}`));
  }

  private get opts(): ServerOptions {
    return this.server.opts;
  }

  private send(message: unknown): void {
    if (!this.socket.destroyed) this.socket.write(encodeFrame(message));
  }

  private sendError(id: RequestId | null, code: ErrorCode, message: string, details?: unknown): void {
    this.send({ id, ok: false, error: { code, message, details } });
  }

  sendEvent(event: ManagerEvent): void {
    const max = this.opts.maxBacklog ?? 16 * 1024 * 1024;
    if (this.socket.writableLength > max) {
      this.opts.logger.warn(`dropping subscriber ${this.peer}: it left ${this.socket.writableLength} bytes of events unread`);
      this.socket.destroy();
      return;
    }
    this.send(event);
  }

  private onData(chunk: Buffer): void {
    for (const frame of this.decoder.push(chunk)) {
      if (frame.kind === 'bad-length') {
        const limit = this.opts.maxFrame;
        this.opts.logger.warn(`closing connection ${this.peer}: frame length ${frame.length} outside 1..${limit}`);
        this.socket.end(
          encodeFrame({ id: null, ok: false, error: { code: 'FRAME_TOO_LARGE', message: `frame length ${frame.length} is outside 1..${limit} bytes (--max-frame); the connection is closed` } }),
        );
        return;
      }
      this.onFrame(frame.body);
    }
  }

  private onFrame(body: Buffer): void {
    let message: unknown;
    try {
      message = decodeBody(body);
    } catch (err) {
      if (!(err instanceof BadMessage)) throw err;
      this.sendError(null, 'BAD_MESSAGE', err.message);
      return;
    }
    const v = validateRequest(message);
    if (!v.ok) {
      this.sendError(v.id, v.code, v.message);
      return;
    }
    const maxInFlight = this.opts.maxInFlight ?? 1024;
    if (this.inFlight >= maxInFlight) {
      this.sendError(v.id, 'LIMIT', `${maxInFlight} requests are already unanswered on this connection; wait for replies`);
      return;
    }
    this.inFlight++;
    this.handle(v.command)
      .then(
        (result) => this.send({ id: v.id, ok: true, ...result }),
        (err: unknown) => {
          if (err instanceof RequestError) return this.sendError(v.id, err.code, err.message, err.details);
          this.opts.logger.error(`internal error handling ${v.command.cmd} from ${this.peer}: ${(err as Error)?.stack ?? String(err)}`);
          this.sendError(v.id, 'INTERNAL', `internal error: ${(err as Error)?.message ?? String(err)}; the manager logged it and keeps serving`);
        },
      )
      .finally(() => this.inFlight--);
  }

  private async handle(command: Command): Promise<Result> {
    const { opts } = this;
    if (command.cmd === 'hello') return this.hello(command.token);
    if (!this.authenticated) {
      throw new RequestError('UNAUTHENTICATED', 'this manager requires a token: send hello with token first');
    }
    switch (command.cmd) {
      case 'ping':
        return { pong: true, time: Date.now() } satisfies CommandResults['ping'];
      case 'status':
        return { ...opts.supervisor.status() };
      case 'stats':
        return { ...opts.sampler.latest() };
      case 'subscribe':
        for (const t of command.topics) this.topics.add(t);
        return { topics: [...this.topics] };
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
    if (expected !== null) {
      // Compare digests: constant time, and no length leak.
      if (token === undefined || !timingSafeEqual(digest(token), digest(expected))) {
        this.opts.logger.warn(`rejected hello from ${this.peer}: ${token === undefined ? 'no token' : 'wrong token'}`);
        throw new RequestError('UNAUTHENTICATED', token === undefined ? 'this manager requires a token; send it in hello' : 'wrong token');
      }
      this.authenticated = true;
    }
    const result: CommandResults['hello'] = { protocol: PROTOCOL_VERSION, manager: { ...this.opts.identity, address: this.server.address } };
    return { ...result };
  }
}
