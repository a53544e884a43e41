// Shared test fixtures: a real manager process on a free port, the CLI, and OS checks.

import { ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { HerdError } from '../src/client';
import { MANAGER_NODE_FLAGS } from '../src/config';
import { readStat } from '../src/proc';

export const ROOT = path.resolve(__dirname, '..');
export const CLI = path.join(ROOT, 'dist/src/cli.js');
export const EXAMPLE_NODE = path.join(ROOT, 'dist/example/node.js');

export interface RunningManager {
  host: string;
  port: number;
  address: string;
  proc: ChildProcess;
  logDir: string;
  /** Everything the manager wrote to stderr so far (its console log). */
  stderr: () => string;
  /** SIGTERM, then resolve with the exit code (SIGKILL after `timeoutMs`). */
  stop: (timeoutMs?: number) => Promise<number | null>;
}

export function tmpDir(prefix = 'herd-test-'): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** The manager's startup line (it names the containment layers), once winston has written it to manager.log. */
export async function startupLine(m: RunningManager): Promise<string> {
  let line: string | undefined;
  await eventually(() => (line = readFileSync(path.join(m.logDir, 'manager.log'), 'utf8').split('\n').find((l) => l.includes('containment:'))) !== undefined, 5000, 'the startup line in manager.log');
  return line!;
}

/** Whether a manager runs its nodes in cgroups (its startup line says "no cgroup" when it cannot). */
export const cgroupActive = async (m: RunningManager) => !(await startupLine(m)).includes('no cgroup');

/**
 * Starts `herd manager --port 0` (plus `args`) and waits for its `listening` line.
 * `wrapper` runs it under another command, e.g. ['prlimit', '--nofile=256', '--'].
 */
export function startManager(args: string[] = [], env: NodeJS.ProcessEnv = {}, wrapper: string[] = []): Promise<RunningManager> {
  const logDir = args.includes('--log-dir') ? args[args.indexOf('--log-dir') + 1] : tmpDir();
  // The node flags bin/herd gives a manager: the tests run what users run.
  const fullArgs = [...MANAGER_NODE_FLAGS, CLI, 'manager', '--host', '127.0.0.1', '--port', '0', ...(args.includes('--log-dir') ? [] : ['--log-dir', logDir]), ...args];
  const [command, ...commandArgs] = [...wrapper, process.execPath, ...fullArgs];
  const proc = spawn(command, commandArgs, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const onData = (d: Buffer) => {
      stdout += d;
      const m = /^listening (\S+):(\d+)$/m.exec(stdout);
      if (!m) return;
      proc.stdout!.off('data', onData);
      const host = m[1].replace(/^\[|\]$/g, '');
      const port = Number(m[2]);
      resolve({
        host,
        port,
        address: `${m[1]}:${port}`,
        proc,
        logDir,
        stderr: () => stderr,
        stop: async (timeoutMs = 10000) => {
          if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
          proc.kill('SIGTERM');
          const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
          const code = await exited;
          clearTimeout(timer);
          return code;
        },
      });
    };
    proc.stdout!.on('data', onData);
    exited.then((code) => reject(new Error(`manager exited with ${code} before listening:\n${stderr}`)));
  });
}

export interface CliRun { code: number | null; stdout: string; stderr: string }

/**
 * Runs the built CLI to its end, asynchronously (a fake manager may live in this process).
 * `env` adds to this process's; `code` is null if a signal (or the timeout) ended it.
 */
export function herd(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }),
    );
  });
}

/** A port on `host` that nothing listens on right now. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, host, resolve));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/** Resolves with the HerdError a request fails with (and fails the test if it succeeds). */
export async function errorOf(p: Promise<unknown>): Promise<HerdError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof HerdError) return err;
    throw err;
  }
  throw new Error('expected the request to fail');
}

/** Polls `check` every 20 ms until it is true or `timeoutMs` passes. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Live (non-zombie) pids whose process group is `pgid`, read from /proc. */
export function groupMembers(pgid: number): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number)
    .filter((pid) => {
      const s = readStat(pid);
      return s !== null && s.pgid === pgid && s.state !== 'Z' && s.state !== 'X';
    });
}

/** Resident set size in bytes (VmRSS of /proc/<pid>/status). */
export function vmRssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

export const FIXTURES = path.join(ROOT, 'test/fixtures');
