// Progress: the counting and rendering of GenerateProgress fed plain events, then
// the real CLI on a pseudo-terminal (util-linux `script`) against a real manager;
// FanoutProgress, the one line of the other fan-outs, alone and in the CLI.

import { execFile } from 'node:child_process';
import { Writable } from 'node:stream';
import { FanoutProgress, GenerateProgress } from '../src/progress';
import type { NodeEvent, NodeState } from '../src/protocol';
import { fakeManager } from './fake-manager';
import { CLI, startManager } from './helpers';

class Capture extends Writable {
  text = '';
  constructor(readonly isTTY: boolean) {
    super();
  }
  override _write(chunk: Buffer, _enc: string, done: () => void) {
    this.text += chunk.toString();
    done();
  }
}

const ev = (generation: number, index: number, state: NodeState): NodeEvent => ({ event: 'node', generation, index, pid: 1000 + index, state });
const A = '10.0.0.1:7070';
const B = '10.0.0.2:7070';

test('counts the new generation only: the reset of the old one and a repeated event do not count', () => {
  const out = new Capture(false);
  const p = new GenerateProgress(out, [A], 2, 'connected');
  p.node(A, ev(4, 0, 'killed')); // the reset before the generate
  p.node(A, ev(5, 0, 'spawning'));
  p.node(A, ev(5, 1, 'spawning'));
  p.node(A, ev(5, 0, 'running'));
  p.node(A, ev(5, 0, 'running'));
  p.node(A, ev(4, 1, 'killed'));
  p.done(A, true);
  const summary = p.finish();
  expect(out.text).toMatch(/^10\.0\.0\.1:7070 {2}spawned 2\/2 {2}connected 1\/2 {2}done {2}\(\S+\)\n$/);
  expect(summary).toMatch(/^spawned 2\/2 in \S+, connected 1\/2 \(\S+ in all\)$/);
});

test('a host that failed is marked so and left out of the summary; no summary when every host failed', () => {
  const out = new Capture(false);
  const p = new GenerateProgress(out, [A, B], 1, 'spawned');
  p.node(A, ev(1, 0, 'spawning'));
  p.done(A, true);
  p.done(B, false);
  expect(p.finish()).toMatch(/^1 of 2 managers ok: spawned 1\/1 in \S+ \(/);
  expect(out.text).toMatch(/^10\.0\.0\.2:7070 {2}spawned 0\/1 {2}failed {2}\(/m);
  const q = new GenerateProgress(new Capture(false), [A], 2, 'spawned');
  q.done(A, false);
  expect(q.finish()).toBeNull();
});

test('a node that exits while the generation starts is shown as exited', () => {
  const p = new GenerateProgress(new Capture(false), [A], 2, 'spawned');
  p.node(A, ev(1, 0, 'spawning'));
  p.node(A, ev(1, 1, 'spawning'));
  p.node(A, ev(1, 1, 'killed'));
  expect(p.finish()).toMatch(/^spawned 2\/2 in \S+, exited 1 \(/);
});

test('several hosts: totals over all of them, times only once every host got there', () => {
  const p = new GenerateProgress(new Capture(false), [A, B], 1, 'connected');
  p.node(A, ev(1, 0, 'spawning'));
  p.node(A, ev(1, 0, 'running'));
  p.node(B, ev(7, 0, 'spawning'));
  expect(p.finish()).toMatch(/^2 managers: spawned 2\/2 in \S+, connected 1\/2 \(/);
});

test('on a terminal the block is redrawn in place and erased at the end', async () => {
  const out = new Capture(true);
  const p = new GenerateProgress(out, [A, B], 3, 'spawned');
  p.node(A, ev(1, 0, 'spawning'));
  await new Promise((r) => setTimeout(r, 250)); // two redraws
  p.finish();
  const draws = out.text.split('\x1b[2F\x1b[J');
  expect(draws.length).toBeGreaterThanOrEqual(3); // drawn, redrawn, erased
  expect(draws[0]).toMatch(/^10\.0\.0\.1:7070 {2}spawned 1\/3 {2}\S+\n10\.0\.0\.2:7070 {2}spawned 0\/3 {2}\S+\n$/);
  expect(draws[draws.length - 1]).toBe('');
});

test('real manager on a pseudo-terminal: progress redrawn on stderr, results and summary after it', async () => {
  const m = await startManager();
  try {
    const cmd = `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} generate 6 --wait connected --manager ${m.address}`;
    const text = await new Promise<string>((resolve, reject) =>
      execFile('script', ['-qec', cmd, '/dev/null'], { timeout: 30_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout))),
    );
    const escaped = m.address.replace(/\./g, '\\.');
    expect(text).toMatch(new RegExp(`${escaped} {2}spawned [0-6]/6 {2}connected [0-6]/6`));
    expect(text).toContain('\x1b[1F\x1b[J');
    const tail = text.slice(text.lastIndexOf('\x1b[J') + 3).split(/\r?\n/).filter(Boolean);
    expect(tail[0]).toMatch(/^spawned 6\/6 in \S+, connected 6\/6 in \S+ \(\S+ in all\)$/);
    expect(tail[1]).toMatch(new RegExp(`^${escaped} {2}generation 1: 6 nodes connected {2}pids `));
  } finally {
    await m.stop();
  }
});

describe('FanoutProgress', () => {
  test('on a terminal: nothing for half a second, then one line redrawn in place, cleared at the end', async () => {
    const out = new Capture(true);
    const p = new FanoutProgress(out, 'status', 3);
    p.host(true);
    await new Promise((r) => setTimeout(r, 300));
    expect(out.text).toBe('');
    p.host(false);
    await new Promise((r) => setTimeout(r, 450));
    p.finish();
    const draws = out.text.split('\r\x1b[2K').filter(Boolean);
    expect(draws.length).toBeGreaterThanOrEqual(1);
    expect(draws[0]).toMatch(/^status: 2\/3 hosts answered \(1 not ok\), waiting for 1 {2}\S+$/);
    expect(out.text.endsWith('\r\x1b[2K')).toBe(true);
  });

  test('not on a terminal: nothing at all', async () => {
    const out = new Capture(false);
    const p = new FanoutProgress(out, 'status', 2);
    await new Promise((r) => setTimeout(r, 700));
    p.finish();
    expect(out.text).toBe('');
  });

  test('the CLI on a pseudo-terminal: a slow fleet shows the line, then the results on a clean line; --json shows none', async () => {
    const hello = { protocol: 1, manager: { version: 'x', hostname: 'fake', pid: 1, address: '127.0.0.1:1' } };
    const fast = await fakeManager((msg, send) => send({ id: msg.id, ok: true, ...(msg.cmd === 'hello' ? hello : { pong: true, time: Date.now() }) }));
    const slow = await fakeManager((msg, send) => void setTimeout(() => send({ id: msg.id, ok: true, pong: true, time: Date.now() }), 1500));
    try {
      const run = (extra: string) =>
        new Promise<string>((resolve, reject) =>
          execFile('script', ['-qec', `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} ping --manager ${fast.address} --manager ${slow.address}${extra}`, '/dev/null'], { timeout: 30_000 }, (err, stdout) =>
            err ? reject(err) : resolve(stdout),
          ),
        );
      const text = await run('');
      expect(text).toContain('ping: 1/2 hosts answered, waiting for 1');
      const after = text.slice(text.lastIndexOf('\x1b[2K') + 4).split(/\r?\n/).filter(Boolean);
      expect(after[0]).toMatch(new RegExp(`^${fast.address.replace(/\./g, '\\.')} {2}pong`));
      expect(after[after.length - 1]).toBe('2 hosts: 2 ok');
      expect(await run(' --json')).not.toContain('hosts answered');
    } finally {
      await Promise.all([fast.close(), slow.close()]);
    }
  });
});
