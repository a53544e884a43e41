// The daemon's lifecycle, end to end with real `herd manager` processes and real
// signals: graceful stop (stop accepting, kill and reap, flush the log, exit 0),
// the second signal (SIGKILL every group, exit at once), the fatal start-up path,
// and SIGHUP reopening the log files (logrotate's move-then-HUP, a deleted log
// directory, one that cannot be made again).

import { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { HerdClient } from '../src/client';
import { eventually, FIXTURES, groupMembers, RunningManager, startManager, startupLine, tmpDir } from './helpers';

jest.setTimeout(60000);

const IGNORES_SIGTERM = path.join(FIXTURES, 'ignores-sigterm.sh');

/** Managers started here, killed if a test left one running. */
const started: RunningManager[] = [];
async function manager(args: string[] = []): Promise<RunningManager> {
  const m = await startManager(args);
  started.push(m);
  return m;
}
/** Node process groups started here, SIGKILLed if a test left one. */
const groups: number[] = [];

afterAll(() => {
  for (const m of started) if (m.proc.exitCode === null && m.proc.signalCode === null) m.proc.kill('SIGKILL');
  for (const pgid of groups) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

/** Resolves with the exit code once the process has exited (null if a signal ended it). */
function exitOf(proc: ChildProcess): Promise<number | null> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(proc.exitCode);
  return new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
}

const running = (m: RunningManager) => m.proc.exitCode === null && m.proc.signalCode === null;

/** Every line of a JSONL file, parsed; fails naming the line that is not JSON. */
function jsonLines(file: string): { level: string; message: string; timestamp: string; [k: string]: unknown }[] {
  const text = readFileSync(file, 'utf8');
  expect(text.endsWith('\n')).toBe(true);
  return text
    .split('\n')
    .slice(0, -1)
    .map((line, i) => {
      try {
        return JSON.parse(line);
      } catch {
        throw new Error(`${file} line ${i + 1} is not JSON: ${line}`);
      }
    });
}

const readOr = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8') : '');

/**
 * Makes the manager log one warning: a connection sending a zero-length frame is
 * answered FRAME_TOO_LARGE and closed, with a line naming the peer. Resolves with
 * that peer (`127.0.0.1:<our port>`), which identifies the line.
 */
function provokeLogLine(m: RunningManager): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: m.host, port: m.port });
    let peer = '';
    socket.on('connect', () => {
      peer = `127.0.0.1:${socket.localPort}`;
      socket.write(Buffer.from([0, 0, 0, 0]));
    });
    socket.on('data', () => {});
    socket.on('error', reject);
    socket.on('close', () => resolve(peer));
  });
}

/** A manager whose `count` nodes ignore SIGTERM (SIGKILL after `graceMs`), resolved once each runs its trap. */
async function stubbornNodes(count: number, graceMs: number) {
  const m = await manager(['--node-command', IGNORES_SIGTERM, '--kill-grace-ms', String(graceMs)]);
  const c = await HerdClient.connect(m.address);
  const g = await c.generate(count);
  groups.push(...g.nodes.map((n) => n.pid));
  const logs = g.nodes.map((n) => path.join(m.logDir, 'nodes', `gen-${g.generation}`, `node-${n.index}.log`));
  await eventually(() => logs.every((f) => readOr(f).includes('started')), 5000, 'the nodes running their trap');
  return { m, c, g, logs };
}

/** Sends the manager its first SIGTERM; resolves once every node (in `logs`) got and ignored its own. */
async function firstSigterm(m: RunningManager, logs: string[]): Promise<void> {
  m.proc.kill('SIGTERM');
  await eventually(() => logs.every((f) => readOr(f).includes('ignoring SIGTERM')), 5000, 'SIGTERM delivered to every node');
}

const countIn = (file: string, needle: string) => readOr(file).split('\n').filter((l) => l.includes(needle)).length;

describe('graceful stop', () => {
  // Logged right before process.exit(), the last record reaches the file only because the
  // log is flushed first; right after start-up (manager.log not yet open) it is lost otherwise.
  test.each(['SIGTERM', 'SIGINT'] as const)('%s as soon as the manager is listening: exit 0, and the last line of manager.log is the "bye" line, as JSON', async (signal) => {
    const m = await manager();
    m.proc.kill(signal);
    expect(await exitOf(m.proc)).toBe(0);
    const lines = jsonLines(path.join(m.logDir, 'manager.log'));
    expect(lines.at(-1)).toMatchObject({ level: 'info', message: 'stopped 0 node(s); bye', timestamp: expect.any(String) });
    expect(lines.at(-2)?.message).toBe(`${signal}: no longer accepting connections; stopping nodes, then exiting`);
  });

  test.each(['SIGTERM', 'SIGINT'] as const)('%s with nodes running: every group reaped, exit 0, "bye" the last line', async (signal) => {
    const m = await manager();
    const c = await HerdClient.connect(m.address);
    const g = await c.generate(2, { wait: 'connected', timeoutMs: 20000 });
    groups.push(...g.nodes.map((n) => n.pid));
    m.proc.kill(signal);
    expect(await exitOf(m.proc)).toBe(0);
    for (const n of g.nodes) expect(groupMembers(n.pid)).toEqual([]);
    expect(jsonLines(path.join(m.logDir, 'manager.log')).at(-1)).toMatchObject({ level: 'info', message: 'stopped 2 node(s); bye' });
    await c.close();
  });

  test('stop accepting: while the nodes are still being killed, new connections are refused; then exit 0 once the grace period is over', async () => {
    const { m, c, g, logs } = await stubbornNodes(2, 3000);

    // The nodes got their SIGTERM (so the manager is in the middle of killing them) and ignored it.
    await firstSigterm(m, logs);
    const refused = await new Promise<string>((resolve) => {
      const s = net.connect({ host: m.host, port: m.port });
      s.on('connect', () => {
        s.destroy();
        resolve('connected');
      });
      s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    });
    expect(refused).toBe('ECONNREFUSED');
    expect(running(m)).toBe(true);
    for (const n of g.nodes) expect(groupMembers(n.pid).length).toBeGreaterThan(0);

    // The grace period ends with SIGKILL; the shutdown completes normally.
    expect(await exitOf(m.proc)).toBe(0);
    for (const n of g.nodes) expect(groupMembers(n.pid)).toEqual([]);
    const lines = jsonLines(path.join(m.logDir, 'manager.log'));
    expect(lines.filter((l) => /ignored SIGTERM for 3000 ms; sending SIGKILL/.test(l.message))).toHaveLength(2);
    expect(lines.at(-1)?.message).toBe('stopped 2 node(s); bye');
    await c.close();
  });
});

test('a second SIGTERM sends SIGKILL to every node group and exits at once, non-zero', async () => {
  const { m, c, g, logs } = await stubbornNodes(3, 60000);
  for (const n of g.nodes) expect(groupMembers(n.pid).length).toBeGreaterThanOrEqual(1);

  await firstSigterm(m, logs);
  // With a 60 s grace period the first signal alone keeps waiting.
  await new Promise((r) => setTimeout(r, 300));
  expect(running(m)).toBe(true);

  const t0 = Date.now();
  m.proc.kill('SIGTERM');
  expect(await exitOf(m.proc)).toBe(1);
  expect(Date.now() - t0).toBeLessThan(3000);
  // SIGKILL was sent before the exit; zombies (orphans nobody reaps) count as gone.
  await eventually(() => g.nodes.every((n) => groupMembers(n.pid).length === 0), 2000, 'every node group gone');
  const lines = jsonLines(path.join(m.logDir, 'manager.log'));
  expect(lines.at(-1)).toMatchObject({ level: 'error', message: 'SIGTERM again: sent SIGKILL to 3 node group(s); exiting now without waiting for them' });
  await c.close();
});

test('a second manager on the log directory of a running one is warned; one started after both have exited is not', async () => {
  const logDir = tmpDir();
  const first = await manager(['--log-dir', logDir]);
  const second = await manager(['--log-dir', logDir]);
  const warning = `--log-dir ${logDir} is also the log directory of the herd manager pid ${first.proc.pid}, which is running`;
  await eventually(() => second.stderr().includes(warning), 5000, 'the warning on stderr');
  expect(first.stderr()).not.toContain('is also the log directory');
  expect(await second.stop()).toBe(0);
  expect(await first.stop()).toBe(0);
  const third = await manager(['--log-dir', logDir]);
  await startupLine(third);
  expect(third.stderr()).not.toContain('is also the log directory');
  expect(await third.stop()).toBe(0);
});

test('fatal start-up: a manager on a port in use exits 1, and its error line is the last line of its manager.log', async () => {
  const m = await manager();
  const logDir = tmpDir();
  await expect(startManager(['--port', String(m.port), '--log-dir', logDir])).rejects.toThrow(/exited with 1/);
  const lines = jsonLines(path.join(logDir, 'manager.log'));
  expect(lines.at(-1)).toMatchObject({ level: 'error', message: expect.stringContaining(`cannot listen on 127.0.0.1:${m.port}: EADDRINUSE`) });
  expect(running(m)).toBe(true);
  expect(await m.stop()).toBe(0);
});

test('SIGHUP as soon as the manager is listening is handled: it does not kill the manager', async () => {
  const m = await manager();
  // Sent as soon as `listening` is read, while the manager logs its start-up lines.
  m.proc.kill('SIGHUP');
  await eventually(() => readOr(path.join(m.logDir, 'manager.log')).includes('SIGHUP: reopened'), 5000, 'the HUP handled');
  expect(running(m)).toBe(true);
  expect(await m.stop()).toBe(0);
  expect(jsonLines(path.join(m.logDir, 'manager.log')).at(-1)?.message).toBe('stopped 0 node(s); bye');
});

describe('SIGHUP reopens the log files', () => {
  test('logrotate: after mv and HUP, new records go to a new manager.log and samples to a new stats.jsonl; none is lost', async () => {
    const m = await manager(['--stats-interval-ms', '100']);
    const log = path.join(m.logDir, 'manager.log');
    const stats = path.join(m.logDir, 'stats.jsonl');
    const before = [await provokeLogLine(m), await provokeLogLine(m)];
    await eventually(() => before.every((p) => countIn(log, p) === 1) && readOr(stats).length > 0, 5000, 'records and samples before rotation');

    renameSync(log, `${log}.1`);
    renameSync(stats, `${stats}.1`);
    const rotatedAt = Date.now();
    // Logged between the move and the HUP: it belongs in the moved file, which is still open.
    const between = await provokeLogLine(m);
    await eventually(() => countIn(`${log}.1`, between) === 1, 5000, 'a record in manager.log.1 between mv and HUP');

    m.proc.kill('SIGHUP');
    await eventually(() => readOr(log).includes('SIGHUP: reopened'), 5000, 'a new manager.log');
    const after = [await provokeLogLine(m), await provokeLogLine(m)];
    await eventually(() => after.every((p) => countIn(log, p) === 1), 5000, 'records after HUP in the new manager.log');
    await eventually(() => readOr(stats).split('\n').length > 3, 5000, 'samples in a new stats.jsonl');
    expect(running(m)).toBe(true);
    const c = await HerdClient.connect(m.address);
    expect((await c.ping()).pong).toBe(true);
    await c.close();
    expect(await m.stop()).toBe(0);

    const old = jsonLines(`${log}.1`);
    const fresh = jsonLines(log);
    for (const p of [...before, between]) {
      expect(old.filter((l) => l.message.includes(p))).toHaveLength(1);
      expect(fresh.filter((l) => l.message.includes(p))).toHaveLength(0);
    }
    for (const p of after) {
      expect(fresh.filter((l) => l.message.includes(p))).toHaveLength(1);
      expect(old.filter((l) => l.message.includes(p))).toHaveLength(0);
    }
    expect(old.at(-1)?.message).toBe('SIGHUP: reopening manager.log and stats.jsonl');
    expect(fresh[0].message).toBe(`SIGHUP: reopened ${log}; stats.jsonl continues in the same directory`);
    expect(fresh.at(-1)?.message).toBe('stopped 0 node(s); bye');
    const newSamples = readFileSync(stats, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    for (const s of newSamples) expect(s).toMatchObject({ time: expect.any(Number), generation: 0, host: { cpus: expect.any(Array) } });
    expect(newSamples[0].time).toBeGreaterThanOrEqual(rotatedAt - 50);
    const oldSamples = readFileSync(`${stats}.1`, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(oldSamples.at(-1).time).toBeLessThan(newSamples[0].time);
  });

  test('a deleted log directory is created again on HUP; logging and sampling resume, and the manager keeps serving', async () => {
    const m = await manager(['--stats-interval-ms', '100']);
    const log = path.join(m.logDir, 'manager.log');
    await eventually(() => readOr(path.join(m.logDir, 'stats.jsonl')).length > 0, 5000, 'a first sample');
    rmSync(m.logDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 10 }); // retried: an append by path can land mid-removal

    m.proc.kill('SIGHUP');
    await eventually(() => readOr(log).includes('SIGHUP: reopened'), 5000, 'manager.log in a re-created directory');
    const peer = await provokeLogLine(m);
    await eventually(() => countIn(log, peer) === 1, 5000, 'a record after HUP');
    await eventually(() => readOr(path.join(m.logDir, 'stats.jsonl')).length > 0, 5000, 'samples again');
    expect(running(m)).toBe(true);
    expect(await m.stop()).toBe(0);
    expect(jsonLines(log).at(-1)?.message).toBe('stopped 0 node(s); bye');
  });

  test('a log directory that cannot be created: one clear error, records held in memory and written once it can be, nothing lost', async () => {
    const m = await manager(['--stats-interval-ms', '100']);
    const log = path.join(m.logDir, 'manager.log');
    // A plain file where the directory was: mkdir -p fails (EEXIST) whatever our privileges.
    rmSync(m.logDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 10 }); // retried: an append by path can land mid-removal
    writeFileSync(m.logDir, 'in the way\n');

    m.proc.kill('SIGHUP');
    await eventually(() => /cannot reopen .*manager\.log/.test(m.stderr()), 5000, 'the error on the console');
    const held = [await provokeLogLine(m), await provokeLogLine(m)];
    // Several retries fail meanwhile (every 1 s), still with one error only.
    await new Promise((r) => setTimeout(r, 2500));
    expect(running(m)).toBe(true);
    const errors = m.stderr().split('\n').filter((l) => l.includes('cannot reopen'));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/error/);
    expect(errors[0]).toContain(`mkdir -p ${m.logDir}`);
    for (const p of held) expect(m.stderr()).toContain(p);

    unlinkSync(m.logDir);
    await eventually(() => readOr(log).includes('can be written again'), 5000, 'the retry re-creating the directory');
    await eventually(() => readOr(path.join(m.logDir, 'stats.jsonl')).length > 0, 5000, 'samples again');
    const after = await provokeLogLine(m);
    await eventually(() => countIn(log, after) === 1, 5000, 'a record after recovery');
    expect(await m.stop()).toBe(0);

    const lines = jsonLines(log);
    const messages = lines.map((l) => l.message);
    const iError = messages.findIndex((s) => s.startsWith('cannot reopen'));
    const iBack = messages.findIndex((s) => s.includes('can be written again'));
    expect(lines[iError].level).toBe('error');
    expect(iError).toBeGreaterThanOrEqual(0);
    // The held records are in the file, in order, before the recovery note; then the later ones.
    for (const p of held) {
      const i = messages.findIndex((s) => s.includes(p));
      expect(i).toBeGreaterThan(iError);
      expect(i).toBeLessThan(iBack);
    }
    expect(messages.findIndex((s) => s.includes(after))).toBeGreaterThan(iBack);
    expect(messages.at(-1)).toBe('stopped 0 node(s); bye');
  });
});
