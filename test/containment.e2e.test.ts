// Containment against the OS: no node, nor anything it started, outlives its
// generation or its manager. Real managers, real processes, checked in /proc.

import { spawn } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { HerdClient } from '../src/client';
import { isAlive, readStat } from '../src/proc';
import { bootId, reapPredecessors } from '../src/runstate';
import { cgroupActive, errorOf, eventually, FIXTURES, groupMembers, RunningManager, startManager, startupLine, tmpDir } from './helpers';

jest.setTimeout(60_000);

const ESCAPEE = path.join(FIXTURES, 'node-with-escapee.sh');

interface Started {
  m: RunningManager;
  c: HerdClient;
  stateDir: string;
}

const running: Started[] = [];

async function manager(args: string[], env: NodeJS.ProcessEnv = {}, wrapper: string[] = []): Promise<Started> {
  const stateDir = args.includes('--state-dir') ? args[args.indexOf('--state-dir') + 1] : tmpDir('herd-state-');
  const m = await startManager([...(args.includes('--state-dir') ? [] : ['--state-dir', stateDir]), ...args], env, wrapper);
  const c = await HerdClient.connect(m.address);
  const s = { m, c, stateDir };
  running.push(s);
  return s;
}

const cleanups: (() => void)[] = [];

afterEach(async () => {
  for (const { m, c } of running.splice(0)) {
    c.close();
    await m.stop();
  }
  for (const cleanup of cleanups.splice(0)) cleanup();
});

/** Pids a node fixture printed to its log ("child 123", "escapee 456"). */
async function printedPids(logDir: string, generation: number, index: number): Promise<Record<string, number>> {
  const file = path.join(logDir, 'nodes', `gen-${generation}`, `node-${index}.log`);
  let found: Record<string, number> = {};
  await eventually(() => {
    found = {};
    if (!existsSync(file)) return false;
    for (const m of readFileSync(file, 'utf8').matchAll(/^(child|escapee) (\d+)$/gm)) found[m[1]] = Number(m[2]);
    return 'child' in found && 'escapee' in found;
  }, 10_000, `pids in ${file}`);
  return found;
}

describe.each([
  ['with the cgroup layer where the host has one', {}],
  ['with the cgroup layer off (process groups and the run-id sweep only)', { HERD_CGROUP: 'off' }],
])('descendants that left the node\'s process group, %s', (_name, env) => {
  test('reset kills them, and says which layer caught them', async () => {
    const { m, c } = await manager(['--node-command', ESCAPEE], env);
    const g = await c.generate(2, { wait: 'connected', timeoutMs: 20000 });
    const printed = await Promise.all(g.nodes.map((n) => printedPids(m.logDir, g.generation, n.index)));
    for (const p of printed) {
      expect(isAlive(p.escapee)).toBe(true);
      expect(readStat(p.escapee)!.pgid).not.toBe(readStat(p.child)!.pgid); // really outside the group
    }
    const r = await c.reset();
    expect(r.killed).toBe(2);
    expect(r.outcomes).toEqual({ exited: 0, terminated: 2, killed: 0 });
    // Per the contract the reply does not wait for descendants; they are signalled before it.
    await eventually(() => printed.every((p) => !isAlive(p.escapee) && !isAlive(p.child)), 3000, 'descendants gone');
    // Each escapee is caught by exactly one layer. With cgroups, it is usually the
    // cgroup; the sweep catches one forked before its node was moved into its cgroup.
    expect(r.strays.cgroup + r.strays.sweep).toBe(2);
    if (!(await cgroupActive(m))) expect(r.strays.cgroup).toBe(0);
  });

  test('kill of one node kills its escaped descendant and leaves the other node\'s alone', async () => {
    const { m, c } = await manager(['--node-command', ESCAPEE], env);
    const g = await c.generate(2, { wait: 'connected', timeoutMs: 20000 });
    const [p0, p1] = await Promise.all(g.nodes.map((n) => printedPids(m.logDir, g.generation, n.index)));
    await c.kill({ index: 0 });
    await eventually(() => !isAlive(p0.escapee), 3000, 'node 0 escapee gone');
    expect(isAlive(p1.escapee)).toBe(true);
    expect(isAlive(g.nodes[1].pid)).toBe(true);
  });
});

test('the cgroup layer catches a descendant that left the group and dropped its environment (skipped without a writable cgroup v2)', async () => {
  const { m, c } = await manager(['--node-command', path.join(FIXTURES, 'node-with-hidden-escapee.sh')]);
  if (!(await cgroupActive(m))) {
    console.warn('skipped: this host offers no writable cgroup v2 with cgroup.kill (see manager.log)');
    return;
  }
  const g = await c.generate(1);
  const log = path.join(m.logDir, 'nodes', `gen-${g.generation}`, 'node-0.log');
  let hidden = 0;
  await eventually(() => {
    hidden = Number(/^hidden (\d+)$/m.exec(existsSync(log) ? readFileSync(log, 'utf8') : '')?.[1] ?? 0);
    return hidden > 0 && isAlive(hidden);
  }, 10_000, 'hidden descendant started');
  expect(readFileSync(log, 'utf8')).not.toContain('never moved into a node cgroup');
  const r = await c.reset();
  expect(r.strays).toEqual({ cgroup: 1, sweep: 0 });
  await eventually(() => !isAlive(hidden), 3000, 'hidden descendant gone');
});

test('each node index keeps its cgroup across generations; one that held a stray is killed, and reused or replaced once empty (skipped without a writable cgroup v2)', async () => {
  // Node 0 leaves a hidden descendant in its cgroup; node 1 leaves nothing.
  const script = path.join(tmpDir('herd-slots-'), 'node.sh');
  writeFileSync(script, `#!/bin/sh\nif [ "$HERD_INDEX" = 0 ]; then exec ${path.join(FIXTURES, 'node-with-hidden-escapee.sh')}; fi\nexec sleep 1000\n`);
  chmodSync(script, 0o755);
  const { m, c } = await manager(['--node-command', script]);
  if (!(await cgroupActive(m))) {
    console.warn('skipped: this host offers no writable cgroup v2 with cgroup.kill (see manager.log)');
    return;
  }
  const runDir = /cgroup (\S+),/.exec(await startupLine(m))![1];
  const cgroupOf = (pid: number) => path.join(runDir, path.basename(/^0::(.*)$/m.exec(readFileSync(`/proc/${pid}/cgroup`, 'utf8'))![1]));
  const g1 = await c.generate(2);
  const log = path.join(m.logDir, 'nodes', `gen-${g1.generation}`, 'node-0.log');
  await eventually(() => existsSync(log) && /^hidden \d+$/m.test(readFileSync(log, 'utf8')), 10_000, 'hidden descendant started');
  expect(readFileSync(log, 'utf8')).not.toContain('never moved into a node cgroup');
  const first = g1.nodes.map((n) => cgroupOf(n.pid));
  expect(path.dirname(first[0])).toBe(runDir);
  expect(first[0]).not.toBe(first[1]);
  expect((await c.reset()).strays).toEqual({ cgroup: 1, sweep: 0 });

  const g2 = await c.generate(2);
  const second = g2.nodes.map((n) => cgroupOf(n.pid));
  expect(second[1]).toBe(first[1]);
  // Node 0's was killed: it serves index 0 again if it had emptied by the end of the reset, else a new one does.
  expect(path.dirname(second[0])).toBe(runDir);
  expect(second[0]).not.toBe(second[1]);
  await c.reset();
  // One cgroup per index is left, empty; a replaced one was removed once empty.
  const left = readdirSync(runDir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => path.join(runDir, d.name));
  expect(left.sort()).toEqual([...second].sort());
  for (const dir of left) expect(readFileSync(path.join(dir, 'cgroup.procs'), 'utf8')).toBe('');
});

describe('a manager that dies without cleaning up', () => {
  test.each([
    ['cgroup where available', {}],
    ['cgroup off', { HERD_CGROUP: 'off' }],
  ])('SIGKILLed with 20 running nodes, each with a grandchild and an escapee: nothing is alive 3 s later (%s)', async (_name, env) => {
    const { m, c } = await manager(['--node-command', ESCAPEE], env);
    const g = await c.generate(20, { wait: 'connected', timeoutMs: 40000 });
    const printed = await Promise.all(g.nodes.map((n) => printedPids(m.logDir, g.generation, n.index)));
    const all = [...g.nodes.map((n) => n.pid), ...printed.flatMap((p) => [p.child, p.escapee])];
    expect(all.filter(isAlive)).toHaveLength(60);
    c.close();
    m.proc.kill('SIGKILL');
    // The requirement itself: gone within 3 s.
    await eventually(() => all.every((pid) => !isAlive(pid)), 3000, 'every node process gone after the manager was SIGKILLed');
    for (const pid of g.nodes.map((n) => n.pid)) expect(groupMembers(pid)).toEqual([]);
    // The watchdog logged what it did, and removed the state file.
    await eventually(() => existsSync(path.join(m.logDir, 'watchdog.log')) && /died; killed/.test(readFileSync(path.join(m.logDir, 'watchdog.log'), 'utf8')), 3000, 'watchdog log');
  });

  test('the next manager with the same state dir reaps the leftovers before it serves; live managers are left alone', async () => {
    const stateDir = tmpDir('herd-state-');
    // A live neighbour sharing the state dir: must not be touched.
    const neighbour = await manager(['--node-command', path.join(FIXTURES, 'sleeper.sh'), '--state-dir', stateDir]);
    const ng = await neighbour.c.generate(2);

    const { m, c } = await manager(['--node-command', ESCAPEE, '--state-dir', stateDir]);
    const g = await c.generate(3, { wait: 'connected', timeoutMs: 20000 });
    const printed = await Promise.all(g.nodes.map((n) => printedPids(m.logDir, g.generation, n.index)));
    // The example node exits by itself when its manager goes away; its descendants would not.
    const descendants = printed.flatMap((p) => [p.child, p.escapee]);
    // Take the watchdog down first, then the manager: the worst case, only the state file is left.
    const watchdog = Number(/watchdog pid (\d+)/.exec(await startupLine(m))![1]);
    process.kill(watchdog, 'SIGKILL');
    // Should an expectation below fail, the leftovers must not outlive the test.
    cleanups.push(() => reapPredecessors(stateDir));
    c.close();
    m.proc.kill('SIGKILL');
    await eventually(() => !isAlive(m.proc.pid!) && !isAlive(watchdog), 3000, 'manager and watchdog dead');
    await new Promise((r) => setTimeout(r, 200));
    expect(descendants.filter(isAlive)).toHaveLength(6); // still there: nobody reaped them

    const next = await manager(['--node-command', ESCAPEE, '--state-dir', stateDir]);
    // By the time it says "listening", they are gone.
    expect(descendants.filter(isAlive)).toEqual([]);
    await eventually(() => /found 1 run\(s\) of a manager that died without cleaning up/.test(readFileSync(path.join(next.m.logDir, 'manager.log'), 'utf8')), 3000, 'reaping logged');
    // The neighbour's nodes and its state file are untouched.
    expect(ng.nodes.every((n) => isAlive(n.pid))).toBe(true);
    expect(readdirSync(stateDir).filter((f) => f.startsWith('run-'))).toHaveLength(2);
    expect((await neighbour.c.status()).counts.spawning).toBe(2);
  });

  test('a state dir that others can write is refused: a planted state file could make the manager kill', async () => {
    const stateDir = tmpDir('herd-state-');
    chmodSync(stateDir, 0o777);
    await expect(startManager(['--state-dir', stateDir])).rejects.toThrow(/exited with 1 before listening[\s\S]*writable by group or others \(mode 777\); chmod 700 it/);
  });

  test('a recorded pid that now belongs to another process (pid reuse) is never signalled', async () => {
    const stateDir = tmpDir('herd-state-');
    const stranger = spawn('sleep', ['1000'], { stdio: 'ignore' });
    try {
      const stat = readStat(stranger.pid!)!;
      // A dead manager's state file listing the stranger's pid with another start time.
      const header = { v: 1, runId: 'feedface', pid: 999999, startTicks: 1, bootId: bootId(), cgroup: null };
      writeFileSync(path.join(stateDir, 'run-feedface.jsonl'), `${JSON.stringify(header)}\n{"+":${stranger.pid},"s":${stat.startTicks + 1}}\n`);
      await manager(['--state-dir', stateDir]);
      expect(isAlive(stranger.pid!)).toBe(true);
      expect(existsSync(path.join(stateDir, 'run-feedface.jsonl'))).toBe(false);
    } finally {
      stranger.kill('SIGKILL');
    }
  });
});

describe('stopping nodes whatever they do', () => {
  test('reset within grace + 1 s: one ignores SIGTERM, one is SIGSTOPped, one exits on its own; per-node outcomes', async () => {
    const { c } = await manager(['--node-command', path.join(FIXTURES, 'by-index.sh'), '--kill-grace-ms', '500']);
    const g = await c.generate(4);
    // Index 1 is the example node: stop it cold; index 3 exits on its own, like index 2.
    await eventually(async () => (await c.status()).counts.running === 1, 10000, 'node 1 connected');
    process.kill(g.nodes[1].pid, 'SIGSTOP');
    await eventually(() => readStat(g.nodes[1].pid)?.state === 'T', 2000, 'node 1 stopped');
    await eventually(async () => (await c.status()).counts.killed === 2, 5000, 'nodes 2 and 3 exited on their own');
    const t0 = Date.now();
    const r = await c.reset();
    expect(Date.now() - t0).toBeLessThan(500 + 1000);
    const byIndex = Object.fromEntries(r.nodes.map((n) => [n.index, n]));
    expect(byIndex[0]).toMatchObject({ outcome: 'killed', signal: 'SIGKILL' });
    // SIGCONT follows SIGTERM, so a stopped node gets to handle it.
    expect(byIndex[1]).toMatchObject({ outcome: 'terminated', exitCode: 0 });
    expect(byIndex[2]).toMatchObject({ outcome: 'exited', exitCode: 0 });
    expect(r.outcomes).toEqual({ exited: 2, terminated: 1, killed: 1 });
    expect(r.killed).toBe(2);
    for (const n of g.nodes) expect(groupMembers(n.pid)).toEqual([]);
  });

  test('nodes exiting on their own during reset and kill (ESRCH races) are "exited", never an error', async () => {
    const { c } = await manager(['--node-command', path.join(FIXTURES, 'exits-soon.sh')]);
    for (let round = 0; round < 5; round++) {
      const g = await c.generate(20);
      const kills = g.nodes.slice(0, 5).map((n) => c.kill({ index: n.index }));
      const r = await c.reset();
      const killed = await Promise.all(kills);
      for (const k of killed) expect(k.outcome === 'exited' || k.outcome === 'terminated').toBe(true);
      expect(r.outcomes.killed).toBe(0);
      // Every node is reported once: a node a kill terminated in that kill's reply, every other one
      // (those that exited on their own included) in the reset's.
      const terminated = killed.flatMap((k, i) => (k.outcome === 'terminated' ? [g.nodes[i].index] : []));
      expect([...r.nodes.map((n) => n.index), ...terminated].sort((a, b) => a - b)).toEqual(g.nodes.map((n) => n.index));
    }
    expect((await c.ping()).pong).toBe(true);
  });

  test('a late connect from an older generation of this manager is refused and that process killed', async () => {
    const { c } = await manager(['--node-command', path.join(FIXTURES, 'sleeper.sh')]);
    const g1 = await c.generate(1);
    const environ = readFileSync(`/proc/${g1.nodes[0].pid}/environ`, 'latin1');
    const runId = /(?:^|\0)HERD_RUN_ID=([0-9a-f]+)/.exec(environ)![1];
    await c.generate(1); // generation 2
    const spawnWith = (generation: number) =>
      spawn('sleep', ['1000'], { stdio: 'ignore', env: { ...process.env, HERD_RUN_ID: runId, HERD_GENERATION: String(generation), HERD_INDEX: '0' } });
    const late = spawnWith(1);
    const current = spawnWith(2);
    try {
      await eventually(() => isAlive(late.pid!) && isAlive(current.pid!), 2000, 'test processes up');
      const e = await errorOf(c.request('connect', { pid: late.pid! }));
      expect(e.code).toBe('UNKNOWN_NODE');
      expect(e.message).toMatch(/generation 1 of this manager.*it was killed/);
      await eventually(() => !isAlive(late.pid!), 2000, 'late process killed');
      // Same run, current generation, but not a node: refused, and left alone (it may be a node's helper).
      expect((await errorOf(c.request('connect', { pid: current.pid! }))).code).toBe('UNKNOWN_NODE');
      expect(isAlive(current.pid!)).toBe(true);
    } finally {
      late.kill('SIGKILL');
      current.kill('SIGKILL');
    }
  });
});

describe('spawn failures are states', () => {
  test('EACCES: a node command that is not executable gives SPAWN_FAILED, and status lists the failure', async () => {
    const { c } = await manager(['--node-command', path.join(FIXTURES, 'not-executable.sh')]);
    const e = await errorOf(c.generate(3));
    expect(e.code).toBe('SPAWN_FAILED');
    expect(e.details).toEqual([{ index: 0, code: 'EACCES' }]);
    const s = await c.status();
    expect(s.failed).toEqual([{ index: 0, code: 'EACCES', message: expect.stringContaining('EACCES') }]);
    expect(s.counts).toEqual({ spawning: 0, running: 0, killed: 0 });
  });

  test('generate 500 under prlimit --nofile=256: per-node EMFILE failures, rollback, and the manager keeps serving', async () => {
    const { c, m } = await manager(['--node-command', path.join(FIXTURES, 'sleeper.sh'), '--max-nodes', '500'], {}, ['prlimit', '--nofile=256', '--']);
    await eventually(() => /--max-nodes 500 is more than this host's limits allow \(64, bound by RLIMIT_NOFILE 256/.test(readFileSync(path.join(m.logDir, 'manager.log'), 'utf8')), 3000, 'limits warning');
    const e = await errorOf(c.generate(500));
    expect(e.code).toBe('SPAWN_FAILED');
    expect(e.message).toMatch(/RLIMIT_NOFILE is 256/);
    const details = e.details as { index: number; code: string }[];
    expect(details.length).toBeGreaterThan(0);
    expect(details.every((d) => d.code === 'EMFILE')).toBe(true);
    const s = await c.status();
    expect(s.failed.map((f) => f.index)).toEqual(details.map((d) => d.index));
    expect(s.counts.spawning + s.counts.running).toBe(0);
    for (const n of s.nodes) expect(isAlive(n.pid)).toBe(false);
    // Still serving: a fresh connection, and a generation that fits.
    const c2 = await HerdClient.connect(m.address);
    try {
      expect((await c2.ping()).pong).toBe(true);
      const g = await c2.generate(10);
      expect(g.nodes.every((n) => isAlive(n.pid))).toBe(true);
      expect((await c2.status()).failed).toEqual([]);
    } finally {
      c2.close();
    }
  });

  test('without --max-nodes, the default comes from the limits: generate 500 under nofile 256 is refused with LIMIT', async () => {
    const { c, m } = await manager(['--node-command', path.join(FIXTURES, 'sleeper.sh')], {}, ['prlimit', '--nofile=256', '--']);
    await eventually(() => /max nodes 64 \(limits allow 64, bound by RLIMIT_NOFILE 256/.test(readFileSync(path.join(m.logDir, 'manager.log'), 'utf8')), 3000, 'limits line');
    const e = await errorOf(c.generate(500));
    expect(e.code).toBe('LIMIT');
    expect(e.message).toMatch(/exceeds this manager's limit of 64 nodes/);
  });
});
