// Helpers shared by the bench scripts (bench/bench.ts, bench/soak.ts): a real manager
// subprocess on a free port, and /proc readers for a process's RSS, CPU ticks, open
// descriptors, command line and environment.
//
// Works both compiled (dist/bench/*.js, run by node) and from source under ts-jest (bench/*.ts).

import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MANAGER_NODE_FLAGS } from '../src/config';
import { PACKAGE_ROOT } from '../src/package';
import { readStat } from '../src/proc';

/** The repository root. */
export const ROOT = PACKAGE_ROOT;
export const CLI = path.join(ROOT, 'dist/src/cli.js');
export const EXAMPLE_NODE = path.join(ROOT, 'dist/example/node.js');
export const RESULTS_DIR = path.join(ROOT, 'bench/results');

export const now = () => performance.now();
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
export const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;
/** CPU this process has used so far, user and system, in ms (µs resolution, where /proc's ticks are 10 ms). */
export const ownCpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

let CLK_TCK_CACHE: number | undefined;
/** Clock ticks per second (the unit of /proc/<pid>/stat CPU times). */
export function clkTck(): number {
  if (CLK_TCK_CACHE === undefined) {
    try {
      CLK_TCK_CACHE = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      CLK_TCK_CACHE = 100;
    }
  }
  return CLK_TCK_CACHE;
}

export function machine() {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown';
  const memTotalKiB = Number(/^MemTotal:\s+(\d+)/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0);
  return { nproc: os.availableParallelism(), node: process.version, cpuModel: model, kernel: os.release(), memTotalMiB: Math.round(memTotalKiB / 1024), clkTck: clkTck() };
}

/** Resident set size in KiB (VmRSS of /proc/<pid>/status). */
export function vmRssKiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s*kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]);
}

/** utime + stime of a live process, in clock ticks. */
export function cpuTicks(pid: number): number {
  const st = readStat(pid);
  if (!st) throw new Error(`pid ${pid} is gone`);
  return st.cpuTicks;
}

/** Number of open file descriptors (entries of /proc/<pid>/fd). */
export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/**
 * Open descriptors by kind: `socket`, `pipe`, `anon_inode:[eventfd]`, ..., or `file` for a path
 * (paths under `/proc/` are `proc`): what to look at when the count grows.
 */
export function fdKinds(pid: number): Record<string, number> {
  const kinds: Record<string, number> = {};
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed while we looked
    }
    const kind = target.startsWith('/proc/') ? 'proc' : target.startsWith('/') ? 'file' : target.replace(/:\[\d+\]$/, '');
    kinds[kind] = (kinds[kind] ?? 0) + 1;
  }
  return kinds;
}

/** Every pid in /proc right now. */
export function allPids(): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number);
}

/** The command line, arguments joined by spaces; '' for zombies, kernel threads and vanished pids. */
export function readCmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').join(' ').trim();
  } catch {
    return '';
  }
}

/** The environment as `NAME=value` strings; [] if unreadable or gone. */
export function readEnviron(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').filter(Boolean);
  } catch {
    return [];
  }
}

// ---- the manager subprocess -------------------------------------------------------

export interface Manager {
  pid: number;
  /** `host:port` from its `listening` line. */
  address: string;
  proc: ChildProcess;
  stderrTail: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  /** Flags for node itself, before the script (e.g. `--trace-gc`). */
  nodeFlags?: string[];
  /** Every stdout line after the `listening` one (the manager prints nothing else there; node's --trace-gc does). */
  onStdoutLine?: (line: string) => void;
}

/** Starts `herd manager --host 127.0.0.1 --port 0 --log-dir <logDir> [args]` (with the node flags bin/herd adds) and waits for its `listening` line. */
export function startManager(args: string[], logDir: string, start: StartOptions = {}): Promise<Manager> {
  if (!existsSync(CLI)) return Promise.reject(new Error(`${CLI} is missing: run \`npm run build\` first`));
  const env = start.env ?? process.env;
  // As bin/herd starts it (MANAGER_NODE_FLAGS), so that the figures are those of the manager users run.
  const fullArgs = [...MANAGER_NODE_FLAGS, ...(start.nodeFlags ?? []), CLI, 'manager', '--host', '127.0.0.1', '--port', '0', '--log-dir', logDir, ...args];
  const proc = spawn(process.execPath, fullArgs, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let stdout = '';
  let stderr = '';
  proc.stderr!.on('data', (d) => {
    stderr += d;
    if (stderr.length > 64 * 1024) stderr = stderr.slice(-32 * 1024);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`manager printed no listening line within 15 s:\n${stderr}`));
    }, 15_000);
    proc.stdout!.on('data', (d) => {
      stdout += d;
      const m = /^listening (\S+)$/m.exec(stdout);
      if (!m || proc.pid === undefined) return;
      clearTimeout(timer);
      proc.stdout!.removeAllListeners('data');
      const onLine = start.onStdoutLine;
      if (onLine) {
        let rest = stdout.slice(m.index + m[0].length + 1);
        const flush = () => {
          const lines = rest.split('\n');
          rest = lines.pop()!;
          lines.forEach(onLine);
        };
        flush();
        proc.stdout!.on('data', (d) => {
          rest += d;
          flush();
        });
      } else {
        proc.stdout!.resume();
      }
      resolve({ pid: proc.pid, address: m[1], proc, stderrTail: () => stderr, exited });
    });
    proc.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`manager exited (code ${code}, signal ${signal}) before listening:\n${stderr}`));
    });
  });
}

export interface ManagerExit { code: number | null; signal: NodeJS.Signals | null; ms: number; forced: boolean }

/** SIGTERM, wait for the exit (the manager kills and reaps its nodes first); SIGKILL after `timeoutMs`. */
export async function stopManager(m: Manager, timeoutMs = 20_000): Promise<ManagerExit> {
  const t0 = now();
  if (m.proc.exitCode !== null || m.proc.signalCode !== null) return { code: m.proc.exitCode, signal: m.proc.signalCode, ms: 0, forced: false };
  m.proc.kill('SIGTERM');
  let forced = false;
  const timer = setTimeout(() => {
    forced = true;
    m.proc.kill('SIGKILL');
  }, timeoutMs);
  const r = await m.exited;
  clearTimeout(timer);
  return { ...r, ms: round(now() - t0, 1), forced };
}
