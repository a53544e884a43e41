// Experiment workflow helpers against real managers and processes: `herd run` (generate,
// hook with the node list, reset at the end, also on SIGINT and failures) and `chaos`
// (the manager's fault injection: kills through the serialised kill path, timeline lines,
// events, reproducible choices). Assertions are on the OS (/proc), not on timing.

import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pick, seededRandom } from '../src/chaos';
import { HerdClient } from '../src/client';
import { isAlive } from '../src/proc';
import type { ChaosEvent, ManagerEvent, TimelineLine } from '../src/protocol';
import { CLI, errorOf, eventually, EXAMPLE_NODE, FIXTURES, freePort, groupMembers, herd, RunningManager, startManager, tmpDir } from './helpers';

const HOOK = path.join(FIXTURES, 'run-hook.sh');

/** Lines of the hook's output file as `key value` (first space). */
function hookOut(file: string): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const line of readFileSync(file, 'utf8').trim().split('\n')) {
    const [k, v] = line.includes('=') && !line.startsWith('file ') ? [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)] : [line.slice(0, line.indexOf(' ')), line.slice(line.indexOf(' ') + 1)];
    m.set(k, [...(m.get(k) ?? []), v]);
  }
  return m;
}

describe('herd run', () => {
  let m: RunningManager;
  beforeAll(async () => {
    m = await startManager(['--node-command', EXAMPLE_NODE]);
  });
  afterAll(async () => {
    await m?.stop();
  });

  test('runs the hook with the node list once all are connected, then resets; the hook\'s status is herd\'s', async () => {
    const out = path.join(tmpDir(), 'hook.out');
    const r = await herd(['run', '3', '--manager', m.address, '--', HOOK], { HOOK_OUT: out, HOOK_EXIT: '7' });
    expect(r.code).toBe(7);
    const env = hookOut(out);
    const nodes = JSON.parse(env.get('HERD_NODES')![0]) as { host: string; index: number; pid: number }[];
    expect(nodes.map((n) => [n.host, n.index])).toEqual([[m.address, 0], [m.address, 1], [m.address, 2]]);
    expect(JSON.parse(env.get('file')![0])).toEqual(nodes);
    expect(env.get('HERD_MANAGERS')).toEqual([m.address]);
    expect(env.get('HERD_NODE_COUNT')).toEqual(['3']);
    expect(Object.keys(JSON.parse(env.get('HERD_GENERATIONS')![0]))).toEqual([m.address]);
    // Every node was alive while the hook ran, and none is now.
    expect(env.get('alive')!.map(Number).sort()).toEqual(nodes.map((n) => n.pid).sort());
    for (const n of nodes) expect(isAlive(n.pid)).toBe(false);
    // The node list file is gone with the run.
    expect(existsSync(env.get('HERD_NODES_FILE')![0])).toBe(false);
    expect(r.stderr).toMatch(/herd run: \S+ {2}generation \d+: 3 nodes connected/);
    expect(r.stderr).toMatch(/the hook exited with status 7/);
    expect(r.stderr).toMatch(/reset: killed 3/);
    const c = await HerdClient.connect(m.address);
    expect((await c.status()).counts).toMatchObject({ spawning: 0, running: 0 });
    await c.close();
  });

  test('SIGINT while the hook runs: the hook\'s whole process group goes, then every node; exit 130', async () => {
    const out = path.join(tmpDir(), 'hook.out');
    const child: ChildProcess = spawn(process.execPath, [CLI, 'run', '2', '--manager', m.address, '--', HOOK], {
      env: { ...process.env, HOOK_OUT: out, HOOK_SLEEP: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await eventually(() => existsSync(out), 20_000, 'the hook to start');
    const env = hookOut(out);
    const hook = Number(env.get('hook')![0]);
    const sleeper = Number(env.get('sleeper')![0]);
    const pids = (JSON.parse(env.get('HERD_NODES')![0]) as { pid: number }[]).map((n) => n.pid);
    expect(groupMembers(hook)).toEqual(expect.arrayContaining([hook, sleeper]));
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    // The background sleep ignores SIGINT (sh does that to background jobs): herd's SIGTERM to the group got it.
    await eventually(() => groupMembers(hook).length === 0, 5000, 'the hook\'s group to be gone');
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
    expect(stderr).toMatch(/SIGINT: sending SIGINT to the hook's process group/);
    expect(stderr).toMatch(/reset: killed 2/);
  });

  test('SIGINT during a wait for connects resets at once (the wait ends), runs no hook; exit 130', async () => {
    const slow = await startManager(['--node-command', path.join(FIXTURES, 'never-connects.sh')]);
    const c = await HerdClient.connect(slow.address);
    try {
      const out = path.join(tmpDir(), 'hook.out');
      const child = spawn(process.execPath, [CLI, 'run', '2', '--timeout', '60000', '--manager', slow.address, '--', HOOK], {
        env: { ...process.env, HOOK_OUT: out },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr!.on('data', (d) => (stderr += d));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      await eventually(async () => (await c.status()).counts.spawning === 2, 20_000, 'both nodes to start');
      const pids = (await c.status()).nodes.map((n) => n.pid);
      child.kill('SIGINT');
      // Well before the 60 s wait: the early reset ended it.
      const t0 = Date.now();
      expect(await exited).toBe(130);
      expect(Date.now() - t0).toBeLessThan(30_000);
      expect(existsSync(out)).toBe(false);
      for (const pid of pids) expect(isAlive(pid)).toBe(false);
      expect(stderr).toMatch(/SIGINT: resetting every manager now/);
    } finally {
      await c.close();
      await slow.stop();
    }
  });

  test('a generate that fails on one manager: no hook, the others are reset, exit 1', async () => {
    const out = path.join(tmpDir(), 'hook.out');
    const down = `127.0.0.1:${await freePort()}`;
    const r = await herd(['run', '2', '--manager', m.address, '--manager', down, '--connect-timeout', '2000', '--', HOOK], { HOOK_OUT: out });
    expect(r.code).toBe(1);
    expect(existsSync(out)).toBe(false);
    expect(r.stderr).toMatch(/generate failed on some manager/);
    expect(r.stderr).toMatch(new RegExp(`${m.address.replace(/\./g, '\\.')} +reset: killed 2`));
    const c = await HerdClient.connect(m.address);
    expect((await c.status()).counts).toMatchObject({ spawning: 0, running: 0 });
    await c.close();
  });

  test('usage errors: no hook, bad flags; nothing is generated', async () => {
    expect((await herd(['run', '2', '--manager', m.address])).stderr).toMatch(/needs a hook command after --/);
    const bad = await herd(['run', '2', '--wait', 'soon', '--manager', m.address, '--', 'true']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--wait must be one of/);
  });
});

describe('chaos', () => {
  let m: RunningManager;
  let c: HerdClient;
  const events: ManagerEvent[] = [];
  const chaosEvents = () => events.filter((e): e is ChaosEvent => e.event === 'chaos');
  beforeAll(async () => {
    m = await startManager(['--node-command', path.join(FIXTURES, 'sleeper.sh')]);
    c = await HerdClient.connect(m.address);
    c.on('event', (e) => events.push(e));
    await c.subscribe(['nodes']);
  });
  afterAll(async () => {
    await c?.close();
    await m?.stop();
  });
  beforeEach(() => {
    events.length = 0;
  });

  async function timeline(generation: number): Promise<TimelineLine[]> {
    const page = await c.timeline({ generation });
    return Buffer.from(page.data).toString('utf8').trim().split('\n').map((l) => JSON.parse(l) as TimelineLine);
  }

  test('--kill 2 --every 300ms --for 1s kills about 6 of 10 nodes through the kill path, each in the timeline and as an event', async () => {
    const { generation, nodes } = await c.generate(10);
    const started = await c.chaos({ kill: 2, everyMs: 300, forMs: 1000 });
    expect(started).toMatchObject({ running: true, generation, kills: 0 });
    await eventually(() => chaosEvents().some((e) => e.action === 'stop'), 15_000, 'the chaos run to end');
    const stop = chaosEvents().find((e) => e.action === 'stop')!;
    const kills = chaosEvents().filter((e) => e.action === 'kill');
    expect(stop).toMatchObject({ reason: 'done', kills: kills.length });
    // 3 rounds of 2 on time; timers under load may lose the last round, never add one.
    expect(kills.length).toBeGreaterThanOrEqual(2);
    expect(kills.length).toBeLessThanOrEqual(6);
    expect(kills.length % 2).toBe(0);
    expect(new Set(kills.map((k) => k.index)).size).toBe(kills.length);
    await eventually(async () => (await c.status()).counts.killed === kills.length, 10_000, 'the kills to be reaped');
    for (const k of kills) expect(isAlive(k.pid)).toBe(false);
    const killedPids = new Set(kills.map((k) => k.pid));
    for (const n of nodes) expect(isAlive(n.pid)).toBe(!killedPids.has(n.pid));
    // Each node killed went through the ordinary kill: stopping, then killed with an outcome.
    const lines = await timeline(generation);
    const chaosLines = lines.filter((l) => l.type === 'chaos');
    expect(chaosLines.map((l) => (l as { action: string }).action)).toEqual(['start', ...kills.map(() => 'kill'), 'stop']);
    expect(chaosLines[0]).toMatchObject({ kill: 2, everyMs: 300, forMs: 1000, seed: started.seed });
    for (const k of kills) {
      expect(lines).toContainEqual(expect.objectContaining({ type: 'node', index: k.index, to: 'killed', outcome: 'terminated' }));
    }
    await c.reset();
  });

  test('a reset ends a run; so does {stop}', async () => {
    const { generation } = await c.generate(10);
    await c.chaos({ kill: 1, everyMs: 100 });
    await eventually(() => chaosEvents().some((e) => e.action === 'kill'), 10_000, 'a first kill');
    await c.reset();
    await eventually(() => chaosEvents().some((e) => e.action === 'stop'), 5000, 'the run to end');
    expect(chaosEvents().find((e) => e.action === 'stop')).toMatchObject({ generation, reason: 'reset' });
    const count = chaosEvents().length;
    await new Promise((r) => setTimeout(r, 300));
    expect(chaosEvents().length).toBe(count);
    expect(await c.chaos({ stop: true })).toMatchObject({ running: false, kills: 0 });

    await c.generate(3);
    await c.chaos({ kill: 1, everyMs: 60_000 });
    expect(await c.chaos({ stop: true })).toMatchObject({ running: false });
    expect(chaosEvents().filter((e) => e.action === 'stop').pop()).toMatchObject({ reason: 'stopped', kills: 0 });
    await c.reset();
  });

  test('the same seed picks the same nodes from the same live set', async () => {
    const firstRound = async () => {
      events.length = 0;
      await c.generate(10);
      await c.chaos({ kill: 3, everyMs: 100, seed: 42 });
      await eventually(() => chaosEvents().filter((e) => e.action === 'kill').length >= 3, 10_000, 'a first round');
      await c.chaos({ stop: true });
      await c.reset();
      return chaosEvents().flatMap((e) => (e.action === 'kill' && e.round === 1 ? [e.index] : []));
    };
    const a = await firstRound();
    expect(a).toHaveLength(3);
    expect(await firstRound()).toEqual(a);
    expect(a).toEqual(pick([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 3, seededRandom(42)));
  });

  test('bad parameters are BAD_ARGUMENT; so is chaos without running nodes', async () => {
    for (const params of [{ kill: 0, everyMs: 100 }, { kill: 1, everyMs: 5 }, { kill: 1 }, { everyMs: 100 }, { kill: -1, everyMs: 100 }, { kill: 1, everyMs: 100, seed: 2 ** 33 }, { stop: 1 }]) {
      const err = await errorOf(c.request('chaos', params as never));
      expect(err.code).toBe('BAD_ARGUMENT');
    }
    await c.reset();
    const err = await errorOf(c.chaos({ kill: 1, everyMs: 100 }));
    expect(err).toMatchObject({ code: 'BAD_ARGUMENT', message: expect.stringContaining('no running node') });
  });

  test('herd chaos --follow prints each kill; usage errors exit 2', async () => {
    await c.generate(4);
    const r = await herd(['chaos', '--manager', m.address, '--kill', '1', '--every', '100ms', '--for', '2s', '--seed', '3', '--follow']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/chaos {2}gen \d+ {2}start: 1 node every 100ms for 2\.0s {2}seed 3/);
    expect(r.stdout).toMatch(/round 1 {2}kill index \d+ {2}pid \d+/);
    // 4 nodes, 1 per round: the run ends when none is left, or at 2 s.
    expect(r.stdout).toMatch(/stop \((no-live-nodes|done)\) after \d+ kills?/);
    await c.reset();
    expect((await herd(['chaos', '--manager', m.address, '--kill', '1', '--every', 'soon'])).stderr).toMatch(/--every must be a duration/);
    expect((await herd(['chaos', '--manager', m.address, '--stop', '--kill', '1'])).code).toBe(2);
    const stopped = await herd(['chaos', '--manager', m.address, '--stop']);
    expect(stopped).toMatchObject({ code: 0, stdout: `${m.address}  no chaos was running\n` });
  });
});
