// A third-party client written from PROTOCOL.md alone (test/interop/client.py,
// Python's msgpack) walks a real manager through a session: hello, ping with a
// uint64 id, generate 3 and wait for them to connect, status, error codes,
// stats, kill, reset. The script checks every reply; here we check that it
// passed and what it reports.

import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { RunningManager, startManager } from './helpers';
import { PYTHON, describeIfPython } from './python';

const CLIENT = path.join(__dirname, 'interop', 'client.py');

interface Step {
  step: string;
  ok: boolean;
  reply: Record<string, any>;
  [extra: string]: unknown;
}
interface Report {
  ok: boolean;
  manager: string;
  steps: Step[];
  failed?: string;
  cleanup?: unknown;
}

function runClient(address: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(PYTHON, ['-B', CLIENT, address], { timeout: 90_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

describeIfPython('Python client written from PROTOCOL.md against a real manager', () => {
  let manager: RunningManager | undefined;

  beforeAll(async () => {
    manager = await startManager();
  }, 30_000);

  afterAll(async () => {
    await manager?.stop();
  }, 15_000);

  test('every step matches the contract', async () => {
    const m = manager!;
    const { code, stdout, stderr } = await runClient(m.address);
    let report: Report | undefined;
    try {
      report = JSON.parse(stdout) as Report;
    } catch {
      report = undefined;
    }
    if (code !== 0 || !report?.ok) {
      throw new Error(
        `client.py exited ${code}\n--- client stderr ---\n${stderr}\n--- client stdout ---\n${stdout}` +
          `\n--- manager stderr (tail) ---\n${m.stderr().slice(-4000)}`,
      );
    }
    expect(report.failed).toBeUndefined();
    expect(report.manager).toBe(`${m.host}:${m.port}`);
    expect(report.steps.map((s) => s.step)).toEqual([
      'hello',
      'ping',
      'ping-small-uint64-id',
      'generate',
      'status',
      'connect-unknown-pid',
      'unknown-command',
      'generate-bad-argument',
      'not-a-map',
      'stats',
      'kill',
      'reset',
      'final-status',
    ]);
    expect(report.steps.every((s) => s.ok)).toBe(true);
    const by = Object.fromEntries(report.steps.map((s) => [s.step, s])) as Record<string, Step>;

    expect(by.hello.reply.protocol).toBe(1);
    expect(by.hello.reply.manager.pid).toBe(m.proc.pid);
    expect(by.ping.requestId).toBe((2n ** 63n + 4242n).toString());
    expect(by.generate.reply.nodes).toHaveLength(3);
    const pid0 = by.generate.reply.nodes.find((n: { index: number }) => n.index === 0).pid;
    expect(by.status.reply.counts).toEqual({ spawning: 0, running: 3, killed: 0 });
    expect(by['connect-unknown-pid'].reply.error.code).toBe('UNKNOWN_NODE');
    expect(by['unknown-command'].reply.error.code).toBe('UNKNOWN_COMMAND');
    expect(by['generate-bad-argument'].reply.error.code).toBe('BAD_ARGUMENT');
    expect(by['not-a-map'].reply).toMatchObject({ id: null, ok: false, error: { code: 'BAD_MESSAGE' } });
    expect(Array.isArray(by.stats.reply.host.cpus)).toBe(true);
    expect(by.kill.reply.pid).toBe(pid0);
    expect(by.reset.reply.killed).toBe(2);
    expect(by['final-status'].reply.counts).toMatchObject({ spawning: 0, running: 0 });
    expect(by['final-status'].reply.generation).toBe(by.generate.reply.generation);
    expect(by['final-status'].processesGone).toBe(true);
  }, 90_000);
});

// docs/PROTOCOL.md ships the shared contract with herd; where the shared one sits
// beside the repository (../shared, as on the machines herd is developed on), they are equal.
const SHARED = path.join(__dirname, '..', '..', 'shared', 'PROTOCOL.md');
const sharedTitle = existsSync(SHARED)
  ? 'docs/PROTOCOL.md is the shared contract, verbatim'
  : `SKIPPED: no ${SHARED} to compare docs/PROTOCOL.md with (it sits beside the repository only where herd is developed)`;
(existsSync(SHARED) ? test : test.skip)(sharedTitle, () => {
  expect(readFileSync(path.join(__dirname, '..', 'docs', 'PROTOCOL.md'), 'utf8')).toBe(readFileSync(SHARED, 'utf8'));
});
