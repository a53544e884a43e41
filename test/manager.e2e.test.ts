// End to end: a real `herd manager` process on --port 0, real TCP, real node
// processes; every command and error code of the contract, checked against the OS.

import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { HerdClient } from '../src/client';
import { decodeBody, FrameDecoder } from '../src/codec';
import { isAlive } from '../src/proc';
import type { ManagerEvent } from '../src/protocol';
import { errorOf, eventually, FIXTURES, groupMembers, ROOT, RunningManager, startManager, tmpDir } from './helpers';
import { describeIfPython, PYTHON } from './python';

jest.setTimeout(60000);

/** Sends raw bytes on a fresh socket; resolves with the decoded messages received until close or `settleMs`. */
function raw(m: RunningManager, bytes: Buffer, settleMs = 300): Promise<{ messages: any[]; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: m.host, port: m.port });
    const decoder = new FrameDecoder(1 << 20);
    const messages: any[] = [];
    let closed = false;
    socket.on('data', (c) => decoder.push(c).forEach((f) => f.kind === 'frame' && messages.push(decodeBody(f.body))));
    socket.on('close', () => {
      closed = true;
      resolve({ messages, closed });
    });
    socket.on('connect', () => socket.write(bytes));
    setTimeout(() => {
      socket.destroy();
      resolve({ messages, closed });
    }, settleMs);
  });
}

const frameOf = (body: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, body.length]), body]);

describe('a manager with the example node', () => {
  let m: RunningManager;
  let c: HerdClient;

  beforeAll(async () => {
    m = await startManager(['--node-command', path.join(FIXTURES, 'node-with-child.sh'), '--stats-interval-ms', '200']);
    c = await HerdClient.connect(m.address);
  });
  afterAll(async () => {
    await c?.close();
    expect(await m?.stop()).toBe(0);
  });

  test('hello and ping', async () => {
    const hello = await c.hello({ client: 'e2e' });
    expect(hello.protocol).toBe(1);
    expect(hello.manager).toMatchObject({ pid: m.proc.pid, address: m.address, version: expect.any(String), hostname: expect.any(String) });
    const ping = await c.ping();
    expect(ping.pong).toBe(true);
    expect(Math.abs(ping.time - Date.now())).toBeLessThan(60000);
  });

  test('reset-then-generate: old nodes and their children are gone from the OS, new ones alive', async () => {
    const events: ManagerEvent[] = [];
    const watcher = await HerdClient.connect(m.address);
    watcher.on('event', (e) => events.push(e));
    await watcher.subscribe(['nodes']);

    const first = await c.generate(5, { wait: 'connected', timeoutMs: 20000 });
    expect(first.nodes.map((n) => n.index)).toEqual([0, 1, 2, 3, 4]);
    const status = await c.status();
    expect(status).toMatchObject({ state: 'idle', generation: first.generation, target: 5, counts: { spawning: 0, running: 5, killed: 0 } });
    for (const n of status.nodes) expect(n).toMatchObject({ state: 'running', startedAt: expect.any(Number), connectedAt: expect.any(Number) });
    // Each node runs in its own group, with its grandchild (the sleep) in it.
    const oldGroups = first.nodes.map((n) => groupMembers(n.pid));
    for (const [i, members] of oldGroups.entries()) {
      expect(members).toContain(first.nodes[i].pid);
      expect(members.length).toBeGreaterThanOrEqual(2);
    }

    const second = await c.generate(3, { wait: 'connected', timeoutMs: 20000 });
    expect(second.generation).toBe(first.generation + 1);
    for (const pid of oldGroups.flat()) expect(isAlive(pid)).toBe(false);
    for (const n of first.nodes) expect(groupMembers(n.pid)).toEqual([]);
    for (const n of second.nodes) expect(isAlive(n.pid)).toBe(true);

    await eventually(() => events.some((e) => e.event === 'ready' && e.generation === second.generation), 5000, 'ready event');
    const killedEvents = events.filter((e) => e.event === 'node' && e.generation === first.generation && e.state === 'killed');
    expect(killedEvents).toHaveLength(5);
    // The example node exits 0 on SIGTERM; the event carries the observed outcome.
    for (const e of killedEvents) expect(e).toMatchObject({ exitCode: 0, signal: null });
    const states = events.filter((e) => e.event === 'node' && e.generation === second.generation && e.index === 0).map((e) => (e as { state: string }).state);
    expect(states).toEqual(['spawning', 'running']);
    await watcher.close();

    const reset = await c.reset();
    expect(reset.killed).toBe(3);
    for (const n of second.nodes) expect(groupMembers(n.pid)).toEqual([]);
    expect((await c.status()).nodes).toEqual([]);
  });

  test('kill by index and by pid; killing a killed node answers with its outcome', async () => {
    const g = await c.generate(2, { wait: 'connected', timeoutMs: 20000 });
    const byIndex = await c.kill({ index: 0 });
    expect(byIndex).toEqual({ pid: g.nodes[0].pid, exitCode: 0, signal: null, outcome: 'terminated' }); // the example node exits 0 on SIGTERM
    expect(groupMembers(g.nodes[0].pid)).toEqual([]);
    expect(await c.kill({ pid: g.nodes[0].pid })).toEqual(byIndex);
    const byPid = await c.kill({ pid: g.nodes[1].pid });
    expect(byPid.pid).toBe(g.nodes[1].pid);
    const status = await c.status();
    expect(status.counts).toEqual({ spawning: 0, running: 0, killed: 2 });
    expect(status.nodes[0]).toMatchObject({ state: 'killed', exitCode: 0, signal: null });
    const unknown = await errorOf(c.kill({ index: 7 }));
    expect(unknown.code).toBe('UNKNOWN_NODE');
    expect((await errorOf(c.kill({ pid: process.pid }))).code).toBe('UNKNOWN_NODE');
  });

  test('nodes get the contract\'s argv and environment; output goes to a file per node', async () => {
    const g = await c.generate(1, { wait: 'connected', timeoutMs: 20000, interface: '[::1]:9999' });
    const log = path.join(m.logDir, 'nodes', `gen-${g.generation}`, 'node-0.log');
    await eventually(() => readFileSync(log, 'utf8').includes('connected as index 0'), 5000, 'node log');
    expect(readFileSync(log, 'utf8')).toContain(`interface [::1]:9999, machine 127.0.0.1`);
    const environ = readFileSync(`/proc/${g.nodes[0].pid}/environ`, 'latin1').split('\0');
    expect(environ).toEqual(expect.arrayContaining([`HERD_MANAGER=${m.address}`, 'HERD_INDEX=0', `HERD_GENERATION=${g.generation}`]));
    expect(environ.some((e) => e.startsWith('HERD_TOKEN='))).toBe(false);
    const cmdline = readFileSync(`/proc/${g.nodes[0].pid}/cmdline`, 'latin1').split('\0');
    expect(cmdline.slice(-3)).toEqual(['[::1]:9999', '127.0.0.1', '']);
    await c.reset();
  });

  test('connect from a pid the manager did not start: UNKNOWN_NODE, and that process survives a reset', async () => {
    const stranger = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      await c.generate(1);
      const err = await errorOf(c.connectNode(stranger.pid!));
      expect(err.code).toBe('UNKNOWN_NODE');
      await c.reset();
      expect(isAlive(stranger.pid!)).toBe(true);
    } finally {
      stranger.kill('SIGKILL');
    }
  });

  test('stats: host CPU and memory, and CPU/RSS of every live node', async () => {
    const g = await c.generate(2, { wait: 'connected', timeoutMs: 20000 });
    // `stats` answers with the last sample, which may predate the nodes' start-up (a node just
    // exec'd has a few hundred KB resident): wait for one that shows both nodes running.
    const grown = async () => {
      const s = await c.stats();
      return s.nodes.length === 2 && s.nodes.every((n) => n.rss > 1024 * 1024);
    };
    const stats = await eventually(grown, 5000, 'a sample of both nodes, started up').then(() => c.stats());
    expect(stats.host.cpus.length).toBeGreaterThan(0);
    expect(stats.host.memUsed).toBeLessThan(stats.host.memTotal);
    expect(stats.nodes.map((n) => n.pid).sort()).toEqual(g.nodes.map((n) => n.pid).sort());
    for (const n of stats.nodes) expect(n.rss).toBeGreaterThan(1024 * 1024);
    const events: ManagerEvent[] = [];
    const sub = await HerdClient.connect(m.address);
    sub.on('event', (e) => events.push(e));
    expect(await sub.subscribe(['stats'])).toEqual({ topics: ['stats'] });
    await eventually(() => events.some((e) => e.event === 'stats'), 3000, 'a stats event');
    expect(events[0]).toMatchObject({ event: 'stats', time: expect.any(Number), host: expect.any(Object), nodes: expect.any(Array) });
    await sub.close();
    await c.reset();
  });

  test('BAD_MESSAGE, UNKNOWN_COMMAND and BAD_ARGUMENT leave the connection usable', async () => {
    const notMap = await raw(m, Buffer.concat([frameOf(Buffer.from([0x05])), frameOf(Buffer.from([0xc1])), frameOf(Buffer.from([0x81, 0xa2, 0x69, 0x64, 0xd4, 0x01, 0x02]))]));
    expect(notMap.closed).toBe(false);
    expect(notMap.messages).toHaveLength(3);
    for (const msg of notMap.messages) expect(msg).toMatchObject({ id: null, ok: false, error: { code: 'BAD_MESSAGE' } });

    expect((await errorOf(c.request('bogus' as never, {} as never))).code).toBe('UNKNOWN_COMMAND');
    expect((await errorOf(c.request('__proto__' as never, {} as never))).code).toBe('UNKNOWN_COMMAND');
    const bad = await errorOf(c.request('generate', { n: 'x' } as never));
    expect(bad.code).toBe('BAD_ARGUMENT');
    expect(bad.message).toContain('n');
    expect((await errorOf(c.request('kill', { pid: 1, index: 1 } as never))).code).toBe('BAD_ARGUMENT');
    expect((await errorOf(c.request('generate', { n: 1, wait: 'forever' } as never))).code).toBe('BAD_ARGUMENT');
    expect((await errorOf(c.request('subscribe', { topics: ['gossip'] } as never))).code).toBe('BAD_ARGUMENT');
    expect((await c.ping()).pong).toBe(true);
  });

  test('FRAME_TOO_LARGE closes only the offending connection', async () => {
    for (const header of [Buffer.from([0, 0, 0, 0]), Buffer.from([0x7f, 0xff, 0xff, 0xff])]) {
      const res = await raw(m, header, 2000);
      expect(res.closed).toBe(true);
      expect(res.messages).toEqual([{ id: null, ok: false, error: { code: 'FRAME_TOO_LARGE', message: expect.any(String) } }]);
    }
    expect((await c.ping()).pong).toBe(true);
  });

  test('LIMIT: a generate above --max-nodes is refused', async () => {
    const err = await errorOf(c.generate(100000));
    expect(err.code).toBe('LIMIT');
  });

  test('status answers at once while a generate waits for nodes to connect', async () => {
    const slow = await startManager(['--node-command', path.join(FIXTURES, 'never-connects.sh')]);
    const client = await HerdClient.connect(slow.address);
    try {
      const pending = errorOf(client.generate(4, { wait: 'connected', timeoutMs: 3000 }));
      let settled = false;
      void pending.then(() => (settled = true));
      await eventually(async () => (await client.status()).counts.spawning === 4, 5000, '4 spawning nodes');
      const status = await client.status();
      expect(settled).toBe(false);
      expect(status.nodes.every((n) => n.state === 'spawning')).toBe(true);
      const err = await pending;
      expect(err.code).toBe('TIMEOUT');
      // The nodes keep running after a TIMEOUT.
      const after = await client.status();
      expect(after.counts.spawning).toBe(4);
      for (const n of after.nodes) expect(isAlive(n.pid)).toBe(true);
    } finally {
      await client.close();
      expect(await slow.stop()).toBe(0);
    }
  });
});

test('NODE_EXITED: a node that dies before connecting fails the wait; its output is in its log', async () => {
  const m = await startManager(['--node-command', path.join(FIXTURES, 'exits-at-once.sh')]);
  const c = await HerdClient.connect(m.address);
  try {
    const err = await errorOf(c.generate(2, { wait: 'connected', timeoutMs: 20000 }));
    expect(err.code).toBe('NODE_EXITED');
    expect(err.details).toEqual(expect.arrayContaining([expect.objectContaining({ exitCode: 3 })]));
    const g = (await c.status()).generation;
    await eventually(() => readFileSync(path.join(m.logDir, 'nodes', `gen-${g}`, 'node-0.log'), 'utf8').includes('giving up'), 3000, 'node stderr in its log');
  } finally {
    await c.close();
    await m.stop();
  }
});

test('SPAWN_FAILED: a node command that does not exist leaves nothing tracked, and the manager keeps serving', async () => {
  const m = await startManager(['--node-command', '/nonexistent/herd-node']);
  const c = await HerdClient.connect(m.address);
  try {
    const err = await errorOf(c.generate(3));
    expect(err.code).toBe('SPAWN_FAILED');
    expect(err.message).toContain('ENOENT');
    expect(err.details).toEqual([{ index: 0, code: 'ENOENT' }]);
    const status = await c.status();
    expect(status).toMatchObject({ state: 'idle', generation: 1, target: 3, nodes: [], counts: { spawning: 0, running: 0, killed: 0 } });
    expect((await c.ping()).pong).toBe(true);
  } finally {
    await c.close();
    await m.stop();
  }
});

test('UNAUTHENTICATED until hello carries the token; nodes get HERD_TOKEN and still connect', async () => {
  const dir = tmpDir();
  const tokenFile = path.join(dir, 'token');
  writeFileSync(tokenFile, 's3cret-token\n', { mode: 0o600 });
  const m = await startManager(['--token-file', tokenFile]);
  try {
    const anon = await HerdClient.connect(m.address);
    expect((await errorOf(anon.status())).code).toBe('UNAUTHENTICATED');
    expect((await errorOf(anon.hello({ token: 'wrong' }))).code).toBe('UNAUTHENTICATED');
    expect((await errorOf(anon.generate(1))).code).toBe('UNAUTHENTICATED');
    await anon.close();
    const c = await HerdClient.connect(m.address, { token: 's3cret-token' });
    const g = await c.generate(2, { wait: 'connected', timeoutMs: 20000 });
    expect(g.nodes).toHaveLength(2);
    await c.close();
  } finally {
    expect(await m.stop()).toBe(0);
  }
});

test('SIGTERM: every node and its children are killed and reaped, the manager exits 0', async () => {
  const m = await startManager(['--node-command', path.join(FIXTURES, 'node-with-child.sh')]);
  const c = await HerdClient.connect(m.address);
  const g = await c.generate(4, { wait: 'connected', timeoutMs: 20000 });
  const members = g.nodes.flatMap((n) => groupMembers(n.pid));
  expect(members.length).toBe(8);
  expect(await m.stop()).toBe(0);
  for (const pid of members) expect(isAlive(pid)).toBe(false);
  expect(readFileSync(path.join(m.logDir, 'manager.log'), 'utf8')).toContain('stopped 4 node(s)');
  await c.close();
});

test('a second manager on a port in use exits non-zero at once, naming the address, starting no node', async () => {
  const m = await startManager();
  try {
    await expect(startManager(['--port', String(m.port)])).rejects.toThrow(new RegExp(`exited with 1[\\s\\S]*127\\.0\\.0\\.1:${m.port}[\\s\\S]*EADDRINUSE`));
  } finally {
    await m.stop();
  }
});

test('50 example nodes connect, and a reset leaves none of them alive', async () => {
  const m = await startManager();
  const c = await HerdClient.connect(m.address);
  try {
    const g = await c.generate(50, { wait: 'connected', timeoutMs: 45000 });
    expect((await c.status()).counts).toEqual({ spawning: 0, running: 50, killed: 0 });
    expect((await c.reset()).killed).toBe(50);
    for (const n of g.nodes) expect(groupMembers(n.pid)).toEqual([]);
  } finally {
    await c.close();
    await m.stop();
  }
});

describeIfPython('the Python reference node (example/node.py)', () => {
  test('connects under a manager, is running, and exits on reset', async () => {
    const m = await startManager(['--node-command', PYTHON, `--node-arg=${path.join(ROOT, 'example/node.py')}`]);
    const c = await HerdClient.connect(m.address);
    try {
      const g = await c.generate(3, { wait: 'connected', timeoutMs: 20000 });
      expect((await c.status()).counts).toEqual({ spawning: 0, running: 3, killed: 0 });
      const log = path.join(m.logDir, 'nodes', `gen-${g.generation}`, 'node-2.log');
      await eventually(() => readFileSync(log, 'utf8').includes('node 2 of generation'), 5000, 'python node log line');
      expect((await c.reset()).killed).toBe(3);
      for (const n of g.nodes) expect(isAlive(n.pid)).toBe(false);
    } finally {
      await c.close();
      await m.stop();
    }
  });
});
