// The server's edge against hostile peers, in process: a real ManagerServer on
// real TCP, with a fake supervisor and sampler so that each limit can be driven
// exactly (and the fake shows what, if anything, got past the edge).

import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { encodeFrame, FrameDecoder, decodeBody } from '../src/codec';
import type { Logger } from '../src/logger';
import { NodeOutput } from '../src/nodeoutput';
import { COMMANDS } from '../src/protocol';
import type { Sampler } from '../src/sampler';
import { ManagerServer, ServerOptions } from '../src/server';
import type { Supervisor } from '../src/supervisor';
import { Timeline } from '../src/timeline';
import { eventually, tmpDir } from './helpers';

const TOKEN = 'the-right-token';

class FakeSupervisor extends EventEmitter {
  readonly requests: unknown[] = [];
  /** While set, requests stay unanswered. */
  hold = false;
  /** Padding added to every status reply. */
  statusPad = '';
  private readonly held: (() => void)[] = [];
  /** A new object every time, as a manager's snapshot is after every change: no status is reused. */
  snapshot() {
    return {};
  }
  status() {
    return { state: 'idle', generation: 0, target: 0, counts: { spawning: 0, running: 0, killed: 0 }, nodes: [], failed: [], pad: this.statusPad };
  }
  request(event: unknown) {
    this.requests.push(event);
    const reply = { result: { done: true } };
    if (!this.hold) return Promise.resolve(reply);
    return new Promise((resolve) => this.held.push(() => resolve(reply)));
  }
  release() {
    this.hold = false;
    for (const r of this.held.splice(0)) r();
  }
}

class FakeSampler extends EventEmitter {
  latest() {
    return { host: { cpus: [1], load: 1, memUsed: 1, memTotal: 2 }, nodes: [] };
  }
}

function fakeLogger() {
  const lines: string[] = [];
  const at = (level: string) => (message: string) => lines.push(`${level} ${message}`);
  return { lines, logger: { warn: at('warn'), info: at('info'), debug: at('debug'), error: at('error') } as unknown as Logger };
}

/** A raw peer: sends frames, collects replies, knows when the server closed it. */
class Peer {
  readonly messages: any[] = [];
  closed = false;
  private readonly decoder = new FrameDecoder(64 << 20);
  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk) => {
      for (const f of this.decoder.push(chunk)) if (f.kind === 'frame') this.messages.push(decodeBody(f.body));
    });
    socket.on('error', () => {});
    socket.on('close', () => (this.closed = true));
  }

  static connect(port: number, localAddress?: string): Promise<Peer> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port, localAddress });
      socket.once('error', reject);
      socket.once('connect', () => resolve(new Peer(socket)));
    });
  }

  send(...messages: unknown[]): void {
    this.socket.write(Buffer.concat(messages.map((m) => (Buffer.isBuffer(m) ? m : encodeFrame(m)))));
  }

  /** Waits for the `n`th message (1-based) and returns it. */
  async nth(n: number, timeoutMs = 3000): Promise<any> {
    await eventually(() => this.messages.length >= n, timeoutMs, `message ${n}`);
    return this.messages[n - 1];
  }

  /** Sends one request and returns the next message. */
  async request(message: unknown): Promise<any> {
    const n = this.messages.length + 1;
    this.send(message);
    return this.nth(n);
  }

  waitClosed(timeoutMs = 3000): Promise<void> {
    return eventually(() => this.closed, timeoutMs, 'the server to close the connection');
  }

  destroy(): void {
    this.socket.destroy();
  }
}

const frameOf = (body: Buffer) => {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(body.length);
  return Buffer.concat([h, body]);
};
const fixstr = (s: string) => Buffer.concat([Buffer.from([0xa0 | s.length]), Buffer.from(s)]);

let sup: FakeSupervisor;
let sampler: FakeSampler;
let log: ReturnType<typeof fakeLogger>;
let server: ManagerServer;
let port: number;
const peers: Peer[] = [];

async function start(opts: Partial<ServerOptions> = {}): Promise<void> {
  sup = new FakeSupervisor();
  sampler = new FakeSampler();
  log = fakeLogger();
  server = new ManagerServer({
    host: '127.0.0.1',
    port: 0,
    maxFrame: 1 << 20,
    maxNodes: 10,
    interfacePort: 7071,
    token: TOKEN,
    identity: { version: 'test', hostname: 'test', pid: process.pid },
    supervisor: sup as unknown as Supervisor,
    sampler: sampler as unknown as Sampler,
    nodeOutput: new NodeOutput({ logDir: tmpdir(), maxBytes: 0, logger: log.logger }),
    timeline: new Timeline({ logDir: tmpDir(), logger: log.logger, manager: () => ({ version: 'test', hostname: 'test', pid: process.pid, address: '' }), intervalMs: 1000, current: () => ({ generation: 0, target: 0 }) }),
    logger: log.logger,
    ...opts,
  });
  const address = await server.listen();
  port = Number(address.slice(address.lastIndexOf(':') + 1));
}

async function connect(localAddress?: string): Promise<Peer> {
  const p = await Peer.connect(port, localAddress);
  peers.push(p);
  return p;
}

afterEach(async () => {
  for (const p of peers.splice(0)) p.destroy();
  await server?.close();
  jest.restoreAllMocks();
});

describe('authentication', () => {
  test('a stranger without the token can do nothing but hello', async () => {
    await start();
    const p = await connect();
    let id = 1;
    // Every command but hello, well formed.
    const requests: Record<string, unknown>[] = [
      { cmd: 'ping' }, { cmd: 'status' }, { cmd: 'stats' }, { cmd: 'reset' },
      { cmd: 'generate', n: 1 }, { cmd: 'connect', pid: process.pid }, { cmd: 'kill', index: 0 },
      { cmd: 'subscribe', topics: ['nodes', 'stats'] }, { cmd: 'timeline' }, { cmd: 'logs', index: 0 },
      { cmd: 'chaos', kill: 1, everyMs: 1000 },
    ];
    expect(new Set(requests.map((r) => r.cmd))).toEqual(new Set(COMMANDS.filter((c) => c !== 'hello')));
    for (const r of requests) {
      const reply = await p.request({ id: ++id, ...r });
      expect(reply).toMatchObject({ id, ok: false, error: { code: 'UNAUTHENTICATED' } });
    }
    // Nor does anything malformed earn a more specific answer.
    for (const junk of [{ id: ++id, cmd: 'bogus' }, { id: ++id, cmd: '__proto__' }, { id: ++id, cmd: 'generate', n: 'x' }, [1, 2], 'str']) {
      expect((await p.request(junk)).error.code).toBe('UNAUTHENTICATED');
    }
    expect((await p.request(frameOf(Buffer.from([0xc1])))).error.code).toBe('UNAUTHENTICATED');
    // Nothing reached the manager, and the subscribe did not subscribe.
    expect(sup.requests).toEqual([]);
    const before = p.messages.length;
    sup.emit('event', { event: 'ready', generation: 1, n: 0 });
    sampler.emit('sample', { event: 'stats', time: 1, host: {}, nodes: [] });
    await new Promise((r) => setTimeout(r, 100));
    expect(p.messages.length).toBe(before);
    expect(p.closed).toBe(false);

    expect(await p.request({ id: ++id, cmd: 'hello', token: TOKEN })).toMatchObject({ id, ok: true, protocol: 1 });
    expect(await p.request({ id: ++id, cmd: 'ping' })).toMatchObject({ id, ok: true, pong: true });
    expect(await p.request({ id: ++id, cmd: 'reset' })).toMatchObject({ id, ok: true });
    expect(sup.requests).toEqual([{ type: 'reset' }]);
  });

  test('the token is compared in constant time, as equal-length digests', async () => {
    await start();
    const spy = jest.spyOn(crypto, 'timingSafeEqual');
    const p = await connect();
    expect((await p.request({ id: 1, cmd: 'hello', token: 'x' })).error.code).toBe('UNAUTHENTICATED');
    expect((await p.request({ id: 2, cmd: 'hello', token: TOKEN })).ok).toBe(true);
    expect(spy).toHaveBeenCalledTimes(2);
    for (const [a, b] of spy.mock.calls) {
      expect((a as Buffer).length).toBe(32);
      expect((b as Buffer).length).toBe(32);
    }
  });

  test('three wrong tokens close the connection, even when pipelined', async () => {
    await start();
    const p = await connect();
    expect((await p.request({ id: 1, cmd: 'hello', token: 'a' })).error).toMatchObject({ code: 'UNAUTHENTICATED', message: 'wrong token' });
    expect((await p.request({ id: 2, cmd: 'hello' })).error.code).toBe('UNAUTHENTICATED');
    expect(p.closed).toBe(false);
    const third = await p.request({ id: 3, cmd: 'hello', token: 'c' });
    expect(third.error.message).toMatch(/closed/);
    await p.waitClosed();

    // Five guesses in one write: three are judged, the rest are never read.
    const q = await connect();
    q.send(...[1, 2, 3, 4, 5].map((id) => ({ id, cmd: 'hello', token: `guess-${id}` })), { id: 6, cmd: 'hello', token: TOKEN });
    await q.waitClosed();
    expect(q.messages.map((m) => m.id)).toEqual([1, 2, 3]);
    expect(log.lines.filter((l) => l.startsWith('warn rejected hello'))).toHaveLength(6);
  });

  test('failed hellos are rate limited per peer address: over budget even the right token is refused; other peers are not', async () => {
    await start({ helloFailureLimit: { burst: 4, refillMs: 60_000 } });
    const a1 = await connect('127.0.0.1');
    for (const id of [1, 2, 3]) await a1.request({ id, cmd: 'hello', token: 'wrong' });
    await a1.waitClosed();
    const a2 = await connect('127.0.0.1');
    expect((await a2.request({ id: 1, cmd: 'hello', token: 'wrong' })).error.message).toMatch(/closed/);
    await a2.waitClosed();
    expect(log.lines.some((l) => /127\.0\.0\.1 used up its failed-hello budget/.test(l))).toBe(true);

    const a3 = await connect('127.0.0.1');
    const refused = await a3.request({ id: 1, cmd: 'hello', token: TOKEN });
    expect(refused).toMatchObject({ id: 1, ok: false, error: { code: 'UNAUTHENTICATED', message: expect.stringMatching(/too many failed hellos from 127\.0\.0\.1; wait \d+ s/) } });
    await a3.waitClosed();

    // Another address on this host is a different peer with its own budget.
    const b = await connect('127.0.0.2');
    expect(await b.request({ id: 1, cmd: 'hello', token: TOKEN })).toMatchObject({ ok: true });
    expect(await b.request({ id: 2, cmd: 'ping' })).toMatchObject({ ok: true, pong: true });
  });

  test('a connection that does not authenticate in time is closed; an authenticated one stays', async () => {
    await start({ authTimeoutMs: 300 });
    const idle = await connect();
    const busy = await connect();
    busy.send({ id: 1, cmd: 'ping' }); // activity is not authentication
    const good = await connect();
    expect((await good.request({ id: 1, cmd: 'hello', token: TOKEN })).ok).toBe(true);
    await idle.waitClosed();
    await busy.waitClosed();
    expect(idle.messages).toEqual([{ id: null, ok: false, error: { code: 'UNAUTHENTICATED', message: expect.stringMatching(/no valid hello within 300 ms/) } }]);
    await new Promise((r) => setTimeout(r, 200));
    expect(good.closed).toBe(false);
    expect((await good.request({ id: 2, cmd: 'ping' })).ok).toBe(true);
  });

  test('without a token there is no auth deadline', async () => {
    await start({ token: null, authTimeoutMs: 100 });
    const p = await connect();
    await new Promise((r) => setTimeout(r, 400));
    expect(p.closed).toBe(false);
    expect((await p.request({ id: 1, cmd: 'status' })).ok).toBe(true);
  });

  test('before hello, frames are limited to 64 KiB; after it, to --max-frame, from the very next frame', async () => {
    await start();
    const big = { id: 2, cmd: 'ping', pad: 'x'.repeat(100 * 1024) };
    const stranger = await connect();
    stranger.send(big);
    await stranger.waitClosed();
    expect(stranger.messages).toEqual([{ id: null, ok: false, error: { code: 'UNAUTHENTICATED', message: expect.stringMatching(/limited to 65536 bytes/) } }]);

    const friend = await connect();
    friend.send({ id: 1, cmd: 'hello', token: TOKEN }, big); // one write: the limit must rise between the two
    expect(await friend.nth(2)).toMatchObject({ id: 2, ok: true, pong: true });
  });
});

describe('limits on every connection', () => {
  test('connections beyond maxConnections get LIMIT and are closed; others are unaffected', async () => {
    await start({ token: null, maxConnections: 2 });
    const a = await connect();
    const b = await connect();
    expect((await a.request({ id: 1, cmd: 'ping' })).ok).toBe(true);
    const c = await connect();
    await c.waitClosed();
    expect(c.messages).toEqual([{ id: null, ok: false, error: { code: 'LIMIT', message: expect.stringMatching(/2 connections/) } }]);
    expect((await b.request({ id: 1, cmd: 'ping' })).ok).toBe(true);
    a.destroy();
    await eventually(async () => {
      const d = await connect();
      const ok = (await d.request({ id: 1, cmd: 'ping' }).catch(() => null))?.ok === true;
      if (!ok) d.destroy();
      return ok;
    }, 3000, 'a slot to free up');
  });

  test('requests in flight beyond maxInFlight get LIMIT at once', async () => {
    await start({ token: null, maxInFlight: 3 });
    sup.hold = true;
    const p = await connect();
    p.send({ id: 1, cmd: 'reset' }, { id: 2, cmd: 'reset' }, { id: 3, cmd: 'kill', index: 0 }, { id: 4, cmd: 'reset' }, { id: 5, cmd: 'ping' });
    expect(await p.nth(1)).toMatchObject({ id: 4, ok: false, error: { code: 'LIMIT' } });
    expect(await p.nth(2)).toMatchObject({ id: 5, ok: false, error: { code: 'LIMIT' } });
    expect(sup.requests).toHaveLength(3);
    sup.release();
    await p.nth(5);
    expect(p.messages.slice(2).map((m) => [m.id, m.ok])).toEqual([[1, true], [2, true], [3, true]]);
    expect((await p.request({ id: 6, cmd: 'ping' })).ok).toBe(true);
  });

  test('an event goes to the subscribers of its topic only; a closed subscriber is forgotten', async () => {
    await start({ token: null });
    const nodes = await connect();
    const stats = await connect();
    const both = await connect();
    const none = await connect();
    expect(await nodes.request({ id: 1, cmd: 'subscribe', topics: ['nodes'] })).toMatchObject({ ok: true, topics: ['nodes'] });
    expect(await stats.request({ id: 1, cmd: 'subscribe', topics: ['stats'] })).toMatchObject({ ok: true, topics: ['stats'] });
    await both.request({ id: 1, cmd: 'subscribe', topics: ['nodes'] });
    expect(await both.request({ id: 2, cmd: 'subscribe', topics: ['stats', 'nodes'] })).toMatchObject({ ok: true, topics: ['nodes', 'stats'] });
    const events = (p: Peer) => p.messages.filter((m) => 'event' in m).map((m) => m.event);
    sup.emit('event', { event: 'node', generation: 1, index: 0, pid: 1, state: 'running' });
    sampler.emit('sample', { event: 'stats', time: 1, generation: 1, host: {}, nodes: [] }, 1);
    await eventually(() => events(both).length === 2 && events(nodes).length === 1 && events(stats).length === 1, 3000, 'the events');
    expect([events(nodes), events(stats), events(both)]).toEqual([['node'], ['stats'], ['node', 'stats']]);
    nodes.destroy();
    await nodes.waitClosed();
    sup.emit('event', { event: 'node', generation: 1, index: 1, pid: 2, state: 'running' });
    await eventually(() => events(both).length === 3, 3000, 'the third event');
    // Round trips after the events: anything sent to `none` or `stats` would have arrived first.
    await none.request({ id: 2, cmd: 'ping' });
    await stats.request({ id: 2, cmd: 'ping' });
    expect([events(none), events(stats)]).toEqual([[], ['stats']]);
  });

  test('a subscriber that does not read its events is dropped, not buffered; a reading one is not', async () => {
    await start({ token: null, maxBacklog: 256 * 1024 });
    const slow = await connect();
    const fast = await connect();
    let fastEvents = 0;
    fast.socket.on('data', () => {});
    expect((await slow.request({ id: 1, cmd: 'subscribe', topics: ['nodes'] })).ok).toBe(true);
    expect((await fast.request({ id: 1, cmd: 'subscribe', topics: ['nodes'] })).ok).toBe(true);
    const slowPort = slow.socket.localPort;
    slow.socket.pause();
    // ~16 MiB of events: more than the kernel's socket buffers can hide.
    const pad = 'x'.repeat(8 * 1024);
    for (let i = 0; i < 2048; i++) {
      sup.emit('event', { event: 'node', generation: 1, index: i, pid: 1, state: 'running', pad });
      if (i % 64 === 0) await new Promise((r) => setImmediate(r));
    }
    await eventually(() => log.lines.some((l) => l.includes(`dropping connection 127.0.0.1:${slowPort}`)), 5000, 'the slow subscriber to be dropped');
    slow.socket.resume();
    await slow.waitClosed();
    await eventually(() => (fastEvents = fast.messages.filter((m) => m.event === 'node').length) === 2048, 10000, 'every event at the fast subscriber');
    expect(fastEvents).toBe(2048);
    expect(fast.closed).toBe(false);
  });

  test('a client that pipelines requests without reading replies is dropped too', async () => {
    await start({ token: null, maxBacklog: 64 * 1024 });
    sup.statusPad = 'x'.repeat(8 * 1024);
    const p = await connect();
    p.socket.pause();
    // ~16 MiB of replies asked for in a few hundred small writes.
    const many = Array.from({ length: 2048 }, (_, i) => encodeFrame({ id: i + 1, cmd: 'status' }));
    for (let i = 0; i < many.length; i += 256) p.socket.write(Buffer.concat(many.slice(i, i + 256)));
    await eventually(() => log.lines.some((l) => l.startsWith('warn dropping connection')), 10000, 'the non-reading client to be dropped');
    p.socket.resume();
    await p.waitClosed();
  });
});

describe('prototype pollution and dispatch', () => {
  test('keys like __proto__, constructor and prototype change no prototype and reach nothing', async () => {
    await start({ token: null });
    const p = await connect();
    // { id: 1, cmd: "connect", pid: <pid>, __proto__: { polluted: true }, nodeId: { __proto__: { polluted: true }, constructor: { prototype: { polluted: true } } } }
    const polluted = fixstr('polluted');
    const evil = Buffer.concat([Buffer.from([0x81]), polluted, Buffer.from([0xc3])]);
    const body = Buffer.concat([
      Buffer.from([0x85]),
      fixstr('id'), Buffer.from([0x01]),
      fixstr('cmd'), fixstr('connect'),
      fixstr('pid'), Buffer.from([0xce]), Buffer.from(new Uint8Array(new Uint32Array([process.pid]).buffer).reverse()),
      fixstr('__proto__'), evil,
      fixstr('nodeId'), Buffer.from([0x82]), fixstr('__proto__'), evil, fixstr('constructor'), Buffer.from([0x81]), fixstr('prototype'), evil,
    ]);
    const reply = await p.request(frameOf(body));
    expect(reply).toMatchObject({ id: 1, ok: true });
    const forwarded = sup.requests[0] as { type: string; pid: number; nodeId: Record<string, unknown> };
    expect(forwarded).toMatchObject({ type: 'connect', pid: process.pid });
    expect(Object.getPrototypeOf(forwarded.nodeId)).toBe(Object.prototype);
    expect((forwarded.nodeId as { polluted?: unknown }).polluted).toBeUndefined();
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
    expect((Object.prototype as { polluted?: unknown }).polluted).toBeUndefined();
  });

  test('only the command table is dispatched: names from Object.prototype are unknown commands', async () => {
    await start({ token: null });
    const p = await connect();
    let id = 0;
    for (const cmd of ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__', 'isPrototypeOf', 'prototype']) {
      expect(await p.request({ id: ++id, cmd })).toMatchObject({ id, ok: false, error: { code: 'UNKNOWN_COMMAND' } });
    }
    expect(sup.requests).toEqual([]);
    expect((await p.request({ id: ++id, cmd: 'ping' })).ok).toBe(true);
  });
});
