// HerdClient against a scripted fake manager on a real socket.

import net from 'node:net';
import { HerdClient, HerdError } from '../src/client';
import { ManagerEvent } from '../src/protocol';
import { Fake, fakeManager, Msg } from './fake-manager';

const ok = (msg: Msg, result: object) => ({ id: msg.id, ok: true, ...result });
const pong = (msg: Msg) => ok(msg, { pong: true, time: 1_700_000_000_000 });

async function rejection(p: Promise<unknown>): Promise<HerdError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(HerdError);
    return err as HerdError;
  }
  throw new Error('expected a rejection');
}

let fake: Fake | undefined;
let client: HerdClient | undefined;
afterEach(async () => {
  await client?.close();
  await fake?.close();
  client = fake = undefined;
});

test('requests carry increasing ids and params; results come back without id/ok', async () => {
  fake = await fakeManager((msg, send) => send(msg.cmd === 'ping' ? pong(msg) : ok(msg, { generation: 1, nodes: [{ index: 0, pid: 42 }] })));
  client = await HerdClient.connect(fake.address);
  expect(await client.ping()).toEqual({ pong: true, time: 1_700_000_000_000 });
  expect(await client.generate(1, { wait: 'spawned', interface: '10.0.0.1:7071' })).toEqual({ generation: 1, nodes: [{ index: 0, pid: 42 }] });
  expect(await client.ping()).toEqual(expect.objectContaining({ pong: true }));
  expect(fake.received.map((m) => m.id)).toEqual([1, 2, 3]);
  expect(fake.received[1]).toEqual({ id: 2, cmd: 'generate', n: 1, wait: 'spawned', interface: '10.0.0.1:7071' });
});

test('replies are matched by id when they arrive out of order', async () => {
  const held: Msg[] = [];
  fake = await fakeManager((msg, send) => {
    held.push(msg);
    if (held.length < 3) return;
    // Answer the last request first, the first last.
    send(pong(held[2]));
    send(ok(held[1], { killed: 7 }));
    send(ok(held[0], { state: 'idle', generation: 5, target: 0, counts: { spawning: 0, running: 0, killed: 0 }, nodes: [] }));
  });
  client = await HerdClient.connect(fake.address);
  const order: string[] = [];
  const track = <T>(name: string, p: Promise<T>) => p.then((r) => (order.push(name), r));
  const [status, reset, ping] = await Promise.all([track('status', client.status()), track('reset', client.reset()), track('ping', client.ping())]);
  expect(status.generation).toBe(5);
  expect(reset).toEqual({ killed: 7 });
  expect(ping.pong).toBe(true);
  expect(order).toEqual(['ping', 'reset', 'status']);
});

test('an error reply rejects with its code, message and details; the connection stays usable', async () => {
  fake = await fakeManager((msg, send) =>
    send(msg.cmd === 'generate'
      ? { id: msg.id, ok: false, error: { code: 'SPAWN_FAILED', message: 'spawn /nope ENOENT', details: [{ index: 0, code: 'ENOENT' }] } }
      : pong(msg)));
  client = await HerdClient.connect(fake.address);
  const err = await rejection(client.generate(2));
  expect(err.code).toBe('SPAWN_FAILED');
  expect(err.message).toBe('spawn /nope ENOENT');
  expect(err.details).toEqual([{ index: 0, code: 'ENOENT' }]);
  expect((await client.ping()).pong).toBe(true);
});

test('events (no id) are emitted, also between a request and its reply', async () => {
  const node: ManagerEvent = { event: 'node', generation: 1, index: 0, pid: 42, state: 'running' };
  fake = await fakeManager((msg, send) => {
    send(node);
    send(ok(msg, { topics: msg.topics }));
    send({ event: 'ready', generation: 1, n: 1 });
  });
  client = await HerdClient.connect(fake.address);
  const events: ManagerEvent[] = [];
  client.on('event', (ev) => events.push(ev));
  expect(await client.subscribe(['nodes'])).toEqual({ topics: ['nodes'] });
  await new Promise((r) => setTimeout(r, 50));
  expect(events).toEqual([node, { event: 'ready', generation: 1, n: 1 }]);
});

test('an error with id null rejects the oldest pending request only', async () => {
  let first = true;
  fake = await fakeManager((msg, send) => {
    if (first) {
      first = false;
      return; // the reply to request 1 is the id-null error sent below
    }
    send({ id: null, ok: false, error: { code: 'BAD_MESSAGE', message: 'body is not a map' } });
    send(pong(msg));
  });
  client = await HerdClient.connect(fake.address);
  const a = client.status();
  const b = client.ping();
  const err = await rejection(a);
  expect(err.code).toBe('BAD_MESSAGE');
  expect((await b).pong).toBe(true);
});

test('FRAME_TOO_LARGE (id null) then close: oldest request gets the code, the rest CLOSED', async () => {
  let count = 0;
  fake = await fakeManager((_msg, send, sock) => {
    if (++count < 2) return;
    send({ id: null, ok: false, error: { code: 'FRAME_TOO_LARGE', message: 'frame of 0 bytes' } });
    sock.end();
  });
  client = await HerdClient.connect(fake.address);
  const closed = new Promise<HerdError | undefined>((resolve) => client!.on('close', resolve));
  const [a, b] = await Promise.all([rejection(client.status()), rejection(client.ping())]);
  expect(a.code).toBe('FRAME_TOO_LARGE');
  expect(b.code).toBe('CLOSED');
  expect((await closed)?.code).toBe('CLOSED');
});

test('an abrupt close rejects every pending request with CLOSED and emits close with the error', async () => {
  let count = 0;
  fake = await fakeManager((_msg, _send, sock) => {
    if (++count === 3) sock.destroy();
  });
  client = await HerdClient.connect(fake.address);
  const closed = new Promise<HerdError | undefined>((resolve) => client!.on('close', resolve));
  const errors = await Promise.all([rejection(client.status()), rejection(client.reset()), rejection(client.ping())]);
  expect(errors.map((e) => e.code)).toEqual(['CLOSED', 'CLOSED', 'CLOSED']);
  expect(errors[0].message).toMatch(/closed by manager|connection lost/);
  expect((await closed)?.code).toBe('CLOSED');
  expect((await rejection(client.ping())).code).toBe('CLOSED');
});

test('a reply that is not plain MessagePack drops the connection with BAD_REPLY', async () => {
  fake = await fakeManager((_msg, _send, sock) => {
    const body = Buffer.from([0xc1]);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(body.length);
    sock.write(Buffer.concat([head, body]));
  });
  client = await HerdClient.connect(fake.address);
  expect((await rejection(client.ping())).code).toBe('BAD_REPLY');
});

test('an unreachable manager rejects connect with UNREACHABLE', async () => {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  const err = await rejection(HerdClient.connect(`127.0.0.1:${port}`));
  expect(err.code).toBe('UNREACHABLE');
  expect(err.message).toMatch(/ECONNREFUSED/);
  expect((await rejection(HerdClient.connect('[::1'))).code).toBe('BAD_ARGUMENT');
});

test('with a token, connect sends hello first and fails on UNAUTHENTICATED', async () => {
  fake = await fakeManager((msg, send) =>
    send(msg.cmd === 'hello' && msg.token === 'sesame'
      ? ok(msg, { protocol: 1, manager: { version: '0.1.0', hostname: 'h', pid: 1, address: '127.0.0.1:1' } })
      : msg.cmd === 'hello'
        ? { id: msg.id, ok: false, error: { code: 'UNAUTHENTICATED', message: 'bad token' } }
        : pong(msg)));
  client = await HerdClient.connect(fake.address, { token: 'sesame', client: 'test' });
  expect(fake.received[0]).toEqual({ id: 1, cmd: 'hello', token: 'sesame', client: 'test' });
  expect(client.manager?.hostname).toBe('h');
  expect((await rejection(HerdClient.connect(fake.address, { token: 'wrong' }))).code).toBe('UNAUTHENTICATED');
});

test('client-side timeout rejects with CLIENT_TIMEOUT; the late reply is ignored', async () => {
  fake = await fakeManager((msg, send) => setTimeout(() => send(pong(msg)), msg.id === 1 ? 200 : 0));
  client = await HerdClient.connect(fake.address);
  expect((await rejection(client.request('ping', {}, { timeoutMs: 50 }))).code).toBe('CLIENT_TIMEOUT');
  await new Promise((r) => setTimeout(r, 250));
  expect((await client.ping()).pong).toBe(true);
});

test('generate wait=connected is not cut off at the server timeout', async () => {
  fake = await fakeManager((msg, send) => setTimeout(() => send(ok(msg, { generation: 1, nodes: [] })), 300));
  client = await HerdClient.connect(fake.address);
  await expect(client.generate(0, { wait: 'connected', timeoutMs: 100 })).resolves.toEqual({ generation: 1, nodes: [] });
});

test('close() rejects pending requests and later ones with CLOSED, and emits close without error', async () => {
  fake = await fakeManager(() => {});
  client = await HerdClient.connect(fake.address);
  const closed = new Promise<HerdError | undefined>((resolve) => client!.on('close', resolve));
  const pending = rejection(client.status());
  await client.close();
  expect((await pending).code).toBe('CLOSED');
  expect(await closed).toBeUndefined();
  expect((await rejection(client.ping())).code).toBe('CLOSED');
});

test('integers past 2^53 come back as bigint', async () => {
  fake = await fakeManager((msg, send) => send(ok(msg, { generation: 2n ** 60n, nodes: [] })));
  client = await HerdClient.connect(fake.address);
  expect((await client.generate(0)).generation).toBe(2n ** 60n);
});

test('an aborted signal abandons a connected client at once: pending requests fail with CLOSED, the socket is closed', async () => {
  fake = await fakeManager(() => undefined); // accepts, never answers
  const abandon = new AbortController();
  client = await HerdClient.connect(fake.address, { signal: abandon.signal });
  const closed = new Promise((resolve) => client!.once('close', resolve));
  const pending = rejection(client.ping());
  abandon.abort();
  expect(await pending).toMatchObject({ code: 'CLOSED', message: expect.stringContaining('abandoned') });
  await closed;
  expect((await rejection(client.ping())).code).toBe('CLOSED');
});
