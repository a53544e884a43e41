// Target resolution (hosts files), then the real `herd` CLI as a subprocess
// against fake managers, and finally against a real manager.
// Needs a build: `npx tsc -p tsconfig.build.json` (`npm test` builds first).

import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { MANAGER_NODE_FLAGS } from '../src/config';
import { parseAddress, parseHostsFile, readTokenFile, resolveTargets, spreadByWeight, TargetError } from '../src/targets';
import { Fake, fakeManager, Msg } from './fake-manager';
import { CLI, freePort, herd, ROOT, startManager, tmpDir } from './helpers';

// ---- targets -------------------------------------------------------------------

describe('targets', () => {
  test('addresses: default port, IPv6 in brackets, canonical form', () => {
    expect(parseAddress('10.0.0.5')).toEqual({ host: '10.0.0.5', port: 7070, address: '10.0.0.5:7070' });
    expect(parseAddress(' node-3.lab:8000 ')).toEqual({ host: 'node-3.lab', port: 8000, address: 'node-3.lab:8000' });
    expect(parseAddress('[::1]:7075')).toEqual({ host: '::1', port: 7075, address: '[::1]:7075' });
    expect(parseAddress('[fe80::1]').address).toBe('[fe80::1]:7070');
    for (const bad of ['::1', '::1:7070', '[nope]:1', 'host:0', 'host:70000', 'host:x', 'host name', '', 'a:1:2']) {
      expect(() => parseAddress(bad)).toThrow(TargetError);
    }
    expect(() => parseAddress('host', null)).toThrow(/port is required/);
  });

  test('hosts file: comments, blank lines, IPv6, default port; errors name file and line', () => {
    const text = '# lab rack\n\n10.0.0.1\n10.0.0.2:7080   # spare\r\n  [::1]:7071\n[2001:db8::2]\n   \n';
    expect(parseHostsFile(text, 'hosts.txt').map((t) => t.address)).toEqual(['10.0.0.1:7070', '10.0.0.2:7080', '[::1]:7071', '[2001:db8::2]:7070']);
    expect(() => parseHostsFile('10.0.0.1\n# ok\n10.0.0.2:99999\n', 'hosts.txt')).toThrow(/^hosts\.txt:3: .*port "99999"/);
    expect(() => parseHostsFile('fe80::1\n', 'h')).toThrow(/^h:1: .*brackets/);
    expect(() => parseHostsFile('a,b\n', 'h')).toThrow(/^h:1: .*not a valid host name/);
    expect(() => parseHostsFile('a b\n', 'h')).toThrow(/^h:1: "b": expected weight=W/);
  });

  test('hosts file weights; --total spread by weight, largest remainders, ties to the first listed', () => {
    const t = parseHostsFile('10.0.0.1 weight=2\n10.0.0.2:7071\tweight=1 # small\n10.0.0.3\n', 'h');
    expect(t.map((x) => [x.address, x.weight])).toEqual([['10.0.0.1:7070', 2], ['10.0.0.2:7071', 1], ['10.0.0.3:7070', undefined]]);
    for (const bad of ['a weight=0', 'a weight=x', 'a weight=2000000', 'a w=2']) expect(() => parseHostsFile(bad, 'h')).toThrow(/^h:1: .*weight=W/);
    expect(spreadByWeight(300, [1, 1, 1])).toEqual([100, 100, 100]);
    expect(spreadByWeight(10, [1, 1, 1])).toEqual([4, 3, 3]);
    expect(spreadByWeight(10, [2, 1, 1])).toEqual([5, 3, 2]);
    expect(spreadByWeight(7, [1, 3])).toEqual([2, 5]);
    expect(spreadByWeight(2, [1, 1, 1, 1])).toEqual([1, 1, 0, 0]);
    expect(spreadByWeight(0, [5, 1])).toEqual([0, 0]);
  });

  test('MANAGER_IPS: the targets when neither --manager nor --hosts is given', () => {
    expect(resolveTargets({ managerIps: '10.0.0.1, 10.0.0.2:7080,,' }).map((t) => t.address)).toEqual(['10.0.0.1:7070', '10.0.0.2:7080']);
    expect(resolveTargets({ managers: ['127.0.0.1:1'], managerIps: '10.0.0.1' }).map((t) => t.address)).toEqual(['127.0.0.1:1']);
    expect(resolveTargets({ managerIps: ' ' }).map((t) => t.address)).toEqual(['127.0.0.1:7070']);
    expect(() => resolveTargets({ managerIps: '10.0.0.1,bad host' })).toThrow(/^MANAGER_IPS /);
  });

  test('resolveTargets: default, --manager plus --hosts, duplicates dropped, missing/empty file', () => {
    const dir = tmpDir();
    const hosts = path.join(dir, 'hosts');
    writeFileSync(hosts, '127.0.0.1\n10.0.0.9:7000\n');
    expect(resolveTargets({}).map((t) => t.address)).toEqual(['127.0.0.1:7070']);
    expect(resolveTargets({ managers: ['127.0.0.1:7070', '[::1]:1'], hostsFile: hosts }).map((t) => t.address))
      .toEqual(['127.0.0.1:7070', '[::1]:1', '10.0.0.9:7000']);
    expect(() => resolveTargets({ hostsFile: path.join(dir, 'missing') })).toThrow(/cannot read hosts file .*missing/);
    writeFileSync(hosts, '# nothing\n');
    expect(() => resolveTargets({ hostsFile: hosts })).toThrow(/lists no managers/);
    expect(() => resolveTargets({ managers: ['x:y'] })).toThrow(/^--manager /);
  });

  test('token file is read and trimmed; an empty one is an error', () => {
    const file = path.join(tmpDir(), 'token');
    writeFileSync(file, '  s3cret\n');
    expect(readTokenFile(file)).toBe('s3cret');
    writeFileSync(file, '\n');
    expect(() => readTokenFile(file)).toThrow(/empty/);
  });
});

// ---- CLI against fake managers ---------------------------------------------------

/** A fake manager whose handler returns the reply: an object merged into an ok reply, or a full message. */
const replying = (reply: (msg: Msg, send: (m: unknown) => void, sock: net.Socket) => unknown) =>
  fakeManager((msg, send, sock) => {
    const r = reply(msg, send, sock) as Msg | undefined;
    if (r) send('ok' in r || 'event' in r ? r : { id: msg.id, ok: true, ...r });
  });

/** An address nothing listens on. */
const deadAddress = async () => `127.0.0.1:${await freePort()}`;

const STATUS = {
  state: 'idle', generation: 3, target: 2, counts: { spawning: 0, running: 1, killed: 1 },
  nodes: [
    { index: 1, pid: 1002, state: 'killed', startedAt: Date.now() - 5000, exitCode: null, signal: 'SIGKILL' },
    { index: 0, pid: 1001, state: 'running', startedAt: Date.now() - 65_000, connectedAt: Date.now() - 64_700 },
  ],
};
const STATS = {
  host: { cpus: [10, 30], load: 20, memUsed: 1.5 * 2 ** 30, memTotal: 4 * 2 ** 30 },
  nodes: [{ pid: 1001, index: 0, cpu: 1.5, rss: 20 * 2 ** 20 }, { pid: 1003, index: 2, cpu: 55.25, rss: 30 * 2 ** 20 }],
};

/** A well-behaved fake: canned results per command, SPAWN_FAILED for generate n > 100. */
function canned(msg: Msg): unknown {
  switch (msg.cmd) {
    case 'hello': return { protocol: 1, manager: { version: 'x', hostname: 'fake', pid: 1, address: '127.0.0.1:1' } };
    case 'ping': return { pong: true, time: Date.now() };
    case 'status': return STATUS;
    case 'stats': return STATS;
    case 'reset': return { killed: 2 };
    case 'kill': return { pid: msg.pid ?? 1001, exitCode: null, signal: 'SIGTERM' };
    case 'generate':
      if (msg.n > 100) return { id: msg.id, ok: false, error: { code: 'SPAWN_FAILED', message: 'spawn ENOENT', details: [{ index: 0, code: 'ENOENT' }] } };
      return { generation: 4, nodes: Array.from({ length: msg.n }, (_, i) => ({ index: i, pid: 500 + i })) };
    default: return { id: msg.id, ok: false, error: { code: 'UNKNOWN_COMMAND', message: msg.cmd } };
  }
}

describe('cli', () => {
  const fakes: Fake[] = [];
  beforeAll(() => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npx tsc -p tsconfig.build.json first`);
  });
  afterEach(async () => {
    await Promise.all(fakes.splice(0).map((f) => f.close()));
  });
  const fake = async (reply: Parameters<typeof replying>[0] = canned) => {
    const f = await replying(reply);
    fakes.push(f);
    return f;
  };

  test('status --json: {host: result}, exit 0', async () => {
    const f = await fake();
    const r = await herd(['status', '--json', '--manager', f.address]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ [f.address]: STATUS });
  });

  test('status, human: header line per host and a node table sorted by index', async () => {
    const f = await fake();
    const r = await herd(['status', '--manager', f.address]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe(`${f.address}  state idle  generation 3  target 2  spawning 0  running 1  killed 1`);
    expect(lines[1].trim().split(/\s+/)).toEqual(['INDEX', 'PID', 'STATE', 'UPTIME', 'CONNECTED', 'EXIT']);
    // Uptime is measured from the test's clock, so allow a few seconds of slack.
    expect(lines[2].trim().split(/\s+/)).toEqual(['0', '1001', 'running', expect.stringMatching(/^1m0[5-9]s$/), '+300ms', '-']);
    expect(lines[3].trim().split(/\s+/)).toEqual(['1', '1002', 'killed', '-', '-', 'SIGKILL']);
  });

  test('stats, human: host line in human units, nodes by CPU descending', async () => {
    const f = await fake();
    const r = await herd(['stats', '--manager', f.address]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe(`${f.address}  cpu 20.0%  cores 10.0% 30.0%  mem 1.5 GiB / 4.0 GiB`);
    expect(lines.slice(1).map((l) => l.trim().split(/\s+/))).toEqual([
      ['INDEX', 'PID', 'CPU%', 'RSS'], ['2', '1003', '55.3', '30', 'MiB'], ['0', '1001', '1.5', '20', 'MiB'],
    ]);
  });

  test('generate sends n, wait, timeoutMs, interface; prints generation and pid ranges', async () => {
    const f = await fake();
    const r = await herd(['generate', '5', '--wait', 'connected', '--timeout', '9000', '--interface', '10.1.1.1:7071', '--manager', f.address]);
    expect(r.code).toBe(0);
    // Human output subscribes to node events first, for the progress lines; the fake refuses that.
    expect(f.received.map((m) => m.cmd)).toEqual(['subscribe', 'generate']);
    expect(f.received[1]).toEqual({ id: 2, cmd: 'generate', n: 5, wait: 'connected', timeoutMs: 9000, interface: '10.1.1.1:7071' });
    expect(r.stdout).toBe(`${f.address}  generation 4: 5 nodes connected  pids 500-504\n`);
  });

  test('reset, kill, ping, in human form', async () => {
    const f = await fake();
    expect((await herd(['reset', '--manager', f.address])).stdout).toBe(`${f.address}  killed 2\n`);
    const kill = await herd(['kill', '--pid', '1234', '--manager', f.address]);
    expect(kill.stdout).toBe(`${f.address}  killed pid 1234  signal SIGTERM\n`);
    expect(f.received.find((m) => m.cmd === 'kill')).toEqual({ id: 1, cmd: 'kill', pid: 1234 });
    expect((await herd(['ping', '--manager', f.address])).stdout).toMatch(/^127\.0\.0\.1:\d+ {2}pong {2}rtt \d+ms/);
  });

  test('two managers concurrently, one unreachable: exit 1, the good host still printed', async () => {
    const f = await fake();
    const dead = await deadAddress();
    const r = await herd(['reset', '--manager', f.address, '--manager', dead]);
    expect(r.code).toBe(1);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(new RegExp(`^${f.address} +killed 2$`));
    expect(lines[1]).toMatch(new RegExp(`^${dead} +error UNREACHABLE: .*ECONNREFUSED`));

    const json = await herd(['status', '--json', '--manager', f.address, '--manager', dead]);
    expect(json.code).toBe(1);
    const parsed = JSON.parse(json.stdout);
    expect(parsed[f.address].generation).toBe(3);
    expect(parsed[dead]).toEqual({ error: { code: 'UNREACHABLE', message: expect.stringContaining('ECONNREFUSED') }, status: 'unreachable' });
  });

  test('managers are asked concurrently: two slow ones take one delay, not two', async () => {
    const slowly = (msg: Msg, send: (m: unknown) => void) => void setTimeout(() => send({ id: msg.id, ok: true, ...(canned(msg) as object) }), 1500);
    const [a, b] = [await fake(slowly), await fake(slowly)];
    const t0 = Date.now();
    const r = await herd(['reset', '--hosts', writeHosts(`${a.address}\n# second\n${b.address}\n`)]);
    expect(r.code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(2900);
    expect(r.stdout).toBe(`${a.address}  killed 2\n${b.address}  killed 2\n2 hosts: 2 ok\n`);
  });

  test('--fanout 1 asks one manager at a time; --command-timeout gives up on a silent one, the others unaffected', async () => {
    const slowly = (msg: Msg, send: (m: unknown) => void) => void setTimeout(() => send({ id: msg.id, ok: true, ...(canned(msg) as object) }), 700);
    const [a, b] = [await fake(slowly), await fake(slowly)];
    const t0 = Date.now();
    const one = await herd(['reset', '--fanout', '1', '--manager', a.address, '--manager', b.address]);
    expect(one.code).toBe(0);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1400);
    const silent = await fake(() => undefined);
    const t1 = Date.now();
    const r = await herd(['status', '--command-timeout', '1500', '--manager', a.address, '--manager', silent.address]);
    expect(r.code).toBe(1);
    expect(Date.now() - t1).toBeLessThan(10000);
    expect(r.stdout).toContain(`${silent.address}  error CLIENT_TIMEOUT: no answer within 1500 ms (--command-timeout)`);
    expect(r.stdout).toMatch(/^2 hosts: 1 ok, 1 timed out$/m);
    expect(r.stdout).toMatch(/^fleet: target 2 {2}spawning 0 {2}running 1 {2}killed 1$/m);
    const j = JSON.parse((await herd(['status', '--json', '--command-timeout', '1500', '--manager', silent.address])).stdout);
    expect(j[silent.address]).toMatchObject({ error: { code: 'CLIENT_TIMEOUT' }, status: 'timed out' });
    // With a token the silent one is stuck in the hello: the deadline abandons that too, and
    // the command exits then, not when the hello's own 60 s timeout would have run out.
    const token = path.join(tmpDir(), 'token');
    writeFileSync(token, 's3cret\n', { mode: 0o600 });
    const t2 = Date.now();
    const withHello = await herd(['status', '--token-file', token, '--command-timeout', '500', '--manager', silent.address]);
    expect(withHello.stdout).toBe(`${silent.address}  error CLIENT_TIMEOUT: no answer within 500 ms (--command-timeout)\n`);
    expect(Date.now() - t2).toBeLessThan(15000);
    for (const bad of [['--fanout', '0'], ['--command-timeout', '0'], ['--fanout', 'x']]) expect((await herd(['ping', ...bad])).code).toBe(2);
  });

  test('generate --total over weighted hosts: a row per host, failed and unreachable ones named, totals; JSON has requested', async () => {
    const [a, b] = [await fake(), await fake()];
    const dead = await deadAddress();
    const hosts = writeHosts(`${a.address} weight=3\n${b.address}\n${dead}\n`);
    const r = await herd(['generate', '--total', '250', '--hosts', hosts]);
    expect(r.code).toBe(1);
    expect(a.received.find((m) => m.cmd === 'generate')!.n).toBe(150);
    expect(b.received.find((m) => m.cmd === 'generate')!.n).toBe(50);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^HOST +STATUS +GENERATION +NODES +SPAWNED +CONNECTED +DETAIL$/);
    expect(lines[1]).toMatch(new RegExp(`^${a.address} +failed \\(SPAWN_FAILED\\) +- +150 +0 +0 +spawn ENOENT$`));
    expect(lines[2]).toMatch(new RegExp(`^${b.address} +ok +4 +50 +50 +0$`));
    expect(lines[3]).toMatch(new RegExp(`^${dead} +unreachable +- +50 +0 +0 +.*ECONNREFUSED`));
    expect(lines[4]).toBe('3 hosts: 1 ok, 1 failed, 1 unreachable; nodes spawned 50/250, connected 0/250');
    const j = JSON.parse((await herd(['generate', '--per-host', '3', '--json', '--manager', b.address, '--manager', dead])).stdout);
    expect(j[b.address]).toMatchObject({ generation: 4, requested: 3 });
    expect(j[dead]).toMatchObject({ error: { code: 'UNREACHABLE' }, status: 'unreachable', requested: 3 });
    for (const bad of [['generate'], ['generate', '3', '--total', '3'], ['generate', '--per-host', '1', '--total', '2'], ['generate', '--total', '-1']]) {
      expect((await herd([...bad, '--manager', b.address])).code).toBe(2);
    }
  });

  test('an error reply shows its code (human) or {error:{code,message,details}} (json), exit 1', async () => {
    const f = await fake();
    const r = await herd(['generate', '1000', '--manager', f.address]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe(`${f.address}  error SPAWN_FAILED: spawn ENOENT [{"index":0,"code":"ENOENT"}]\n`);
    const j = await herd(['generate', '1000', '--json', '--manager', f.address]);
    expect(JSON.parse(j.stdout)).toEqual({ [f.address]: { error: { code: 'SPAWN_FAILED', message: 'spawn ENOENT', details: [{ index: 0, code: 'ENOENT' }] }, status: 'failed', requested: 1000 } });
  });

  test('integers past 2^53 print as exact JSON numbers', async () => {
    const f = await fake((msg) => ({ id: msg.id, ok: true, generation: 2n ** 64n - 1n, nodes: [] }));
    const r = await herd(['generate', '0', '--json', '--manager', f.address]);
    expect(r.code).toBe(0);
    expect(r.stdout.replace(/\s/g, '')).toBe(`{"${f.address}":{"generation":18446744073709551615,"nodes":[],"requested":0}}`);
  });

  test('--token-file: hello with the trimmed token goes first', async () => {
    const f = await fake();
    const token = path.join(tmpDir(), 'token');
    writeFileSync(token, 'sesame\n');
    const r = await herd(['ping', '--token-file', token, '--manager', f.address]);
    expect(r.code).toBe(0);
    expect(f.received.map((m) => m.cmd)).toEqual(['hello', 'ping']);
    expect(f.received[0]).toEqual({ id: 1, cmd: 'hello', token: 'sesame', client: 'herd-cli' });
  });

  test('UNAUTHENTICATED tells a CLI user how to give the token; a refused generate prints no progress summary', async () => {
    const f = await fake((msg, send) => void send({ id: msg.id, ok: false, error: { code: 'UNAUTHENTICATED', message: 'this manager requires a token: send hello with the token first' } }));
    const r = await herd(['generate', '2', '--manager', f.address]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('--token-file FILE or $HERD_TOKEN_FILE');
    expect(r.stderr).toMatch(/spawned 0\/2 {2}failed/);
    expect(r.stderr).not.toMatch(/in all/);
  });

  test('watch --json: subscribed line, one event per line, exit 1 when the manager goes away', async () => {
    const f = await fake((msg, send, sock) => {
      send({ id: msg.id, ok: true, topics: msg.topics });
      send({ event: 'node', generation: 1, index: 0, pid: 7, state: 'running' });
      send({ event: 'ready', generation: 1, n: 1 });
      setTimeout(() => sock.end(), 100);
    });
    const r = await herd(['watch', '--json', '--topics', 'nodes', '--manager', f.address]);
    expect(r.code).toBe(1);
    expect(f.received[0]).toEqual({ id: 1, cmd: 'subscribe', topics: ['nodes'] });
    expect(r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l))).toEqual([
      { manager: f.address, subscribed: ['nodes'] },
      { manager: f.address, event: 'node', generation: 1, index: 0, pid: 7, state: 'running' },
      { manager: f.address, event: 'ready', generation: 1, n: 1 },
      { manager: f.address, closed: true, error: { code: 'CLOSED', message: 'connection closed by manager' } },
    ]);
  });

  test('usage errors exit 2 with usage on stderr; --help and --version exit 0', async () => {
    for (const args of [[], ['bogus'], ['kill'], ['kill', '--pid', '1', '--index', '2'], ['generate'], ['generate', 'x'],
      ['generate', '3', '--wait', 'soon'], ['status', '--nope'], ['status', 'extra'], ['watch', '--topics', 'cpu'],
      ['generate', '1', '--interface', 'nohost']]) {
      const r = await herd(args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr).toMatch(/usage: herd/);
      expect(r.stdout).toBe('');
    }
    const badHosts = await herd(['status', '--hosts', writeHosts('10.0.0.1\nbad host\n')]);
    expect(badHosts.code).toBe(2);
    expect(badHosts.stderr).toMatch(/hosts:2: /);
    const help = await herd(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/herd generate N/);
    expect((await herd(['kill', '--help'])).stdout).toMatch(/^usage: herd kill --pid P \| --index I/);
    expect((await herd(['--version'])).stdout).toMatch(/^\d+\.\d+\.\d+/);
  });
});

function writeHosts(text: string): string {
  const file = path.join(tmpDir(), 'hosts');
  writeFileSync(file, text);
  return file;
}

// ---- CLI against a real manager ------------------------------------------------------

test('real manager: generate 3 --wait connected, status shows 3 running, reset kills 3', async () => {
  const m = await startManager();
  try {
    const gen = await herd(['generate', '3', '--wait', 'connected', '--manager', m.address]);
    expect(gen.code).toBe(0);
    expect(gen.stdout).toMatch(/generation \d+: 3 nodes connected {2}pids /);
    // Not a terminal: plain progress lines on stderr, then the summary.
    expect(gen.stderr).toMatch(new RegExp(`^${m.address.replace(/\./g, '\\.')}  spawned 3/3  connected 3/3  done {2}\\(`, 'm'));
    expect(gen.stderr.trimEnd().split('\n').pop()).toMatch(/^spawned 3\/3 in \S+, connected 3\/3 in \S+ \(\S+ in all\)$/);
    const status = JSON.parse((await herd(['status', '--json', '--manager', m.address])).stdout)[m.address];
    expect(status.counts.running).toBe(3);
    expect(status.nodes.map((n: { state: string }) => n.state)).toEqual(['running', 'running', 'running']);
    const reset = await herd(['reset', '--manager', m.address]);
    expect(reset).toEqual({ code: 0, stdout: `${m.address}  killed 3  (terminated 3, killed after grace 0, had exited 0)\n`, stderr: '' });
  } finally {
    await m.stop();
  }
});

test('bin/herd, reached through a symlink as npm links it: runs the CLI, and the manager with MANAGER_NODE_FLAGS', async () => {
  const dir = tmpDir();
  const link = path.join(dir, 'herd');
  symlinkSync(path.join(ROOT, 'bin', 'herd'), link);
  const version = await new Promise<string>((resolve, reject) => execFile(link, ['--version'], (err, stdout) => (err ? reject(err) : resolve(stdout))));
  expect(version.trim()).toBe(JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version);
  const proc = spawn(link, ['manager', '--host', '127.0.0.1', '--port', '0', '--log-dir', path.join(dir, 'logs'), '--state-dir', path.join(dir, 'state')], { stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    await new Promise<void>((resolve, reject) => {
      proc.stdout!.on('data', (d) => /^listening /m.test(String(d)) && resolve());
      proc.on('exit', (code) => reject(new Error(`exited with ${code}`)));
    });
    // The script exec'd node: same pid, node's command line with the flags before the CLI.
    const argv = readFileSync(`/proc/${proc.pid}/cmdline`, 'utf8').split('\0');
    expect(argv.slice(1, 2 + MANAGER_NODE_FLAGS.length)).toEqual([...MANAGER_NODE_FLAGS, CLI]);
    expect(readFileSync(path.join(dir, 'logs', 'manager.log'), 'utf8')).not.toMatch(/node runs without/);
  } finally {
    proc.kill('SIGTERM');
    await new Promise((resolve) => proc.once('exit', resolve));
  }
});
