// `herd run`: generate on every manager, run a hook command with the node list, and
// reset every manager at the end, whatever happens: the hook fails, a generate fails
// on some host, or herd gets SIGINT/SIGTERM (passed on to the hook's process group,
// which is waited for before the reset).
//
// The hook runs in a process group of its own, so that herd can stop it and all it
// started; the node list reaches it as a JSON file (HERD_NODES_FILE) and, while small
// enough for the environment, inline (HERD_NODES).

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface RunNode { host: string; index: number; pid: number }

/** What the generate step produced: `ok` is false if any manager failed. */
export interface Generated { ok: boolean; nodes: RunNode[]; generations: Record<string, number> }

export interface RunParts {
  hook: string[];
  /** Generates on every manager (reporting as it likes). */
  generate: () => Promise<Generated>;
  /** Resets every manager; false if any failed. */
  reset: () => Promise<boolean>;
  /** One line for the user (stderr). */
  note: (line: string) => void;
}

/** Larger node lists go by file only: one environment string may not exceed 128 KiB (MAX_ARG_STRLEN). */
export const INLINE_NODES_MAX = 64 * 1024;

const SIGNAL_STATUS: Record<string, number> = { SIGINT: 130, SIGTERM: 143 };

/** Returns the exit status: the hook's, 1 if a generate or reset failed, 128 + signal if herd was interrupted. */
export async function runExperiment(parts: RunParts): Promise<number> {
  let interrupted: NodeJS.Signals | null = null;
  let signals = 0;
  let phase: 'generate' | 'hook' | 'reset' = 'generate';
  let hookPid: number | null = null;
  /** A reset sent as soon as a signal comes during the generate: it ends a wait for connects. */
  let early: Promise<boolean> | null = null;
  const onSignal = (signal: NodeJS.Signals) => {
    interrupted ??= signal;
    signals++;
    if (phase === 'generate' && early === null) {
      parts.note(`${signal}: resetting every manager now, and again once every generate has answered`);
      early = parts.reset();
    } else if (phase === 'hook') {
      // A hook that ignores the first signal gets SIGKILL on the second.
      const forward = signals > 1 ? 'SIGKILL' : signal;
      parts.note(`${signal}: sending ${forward} to the hook's process group, then resetting every manager`);
      if (hookPid !== null) killGroup(hookPid, forward);
    } else {
      parts.note(`${signal}: the reset is under way`);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'herd-run-'));
  const done = () => {
    rmSync(dir, { recursive: true, force: true });
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  let generated: Generated;
  try {
    generated = await parts.generate();
  } catch (err) {
    // Thrown before any manager was asked (a usage error): nothing to reset.
    done();
    throw err;
  }
  let status = 0;
  try {
    if (interrupted !== null) {
      // Nothing to run; the reset below catches what a generate applied after the early reset.
    } else if (!generated.ok) {
      parts.note('generate failed on some manager (above); the hook is not run');
      status = 1;
    } else {
      phase = 'hook';
      status = await runHook(parts.hook, hookEnv(generated, dir), (pid) => {
        hookPid = pid;
        // A signal between the spawn and now found no group to signal yet.
        if (interrupted !== null) killGroup(pid, interrupted);
      });
      if (status !== 0 && interrupted === null) parts.note(`the hook exited with status ${status}`);
    }
  } finally {
    phase = 'reset';
    if (early !== null) await early;
    if (!(await parts.reset()) && status === 0) status = 1;
    done();
  }
  return interrupted !== null ? SIGNAL_STATUS[interrupted] : status;
}

function hookEnv(g: Generated, dir: string): NodeJS.ProcessEnv {
  const file = path.join(dir, 'nodes.json');
  const json = JSON.stringify(g.nodes);
  writeFileSync(file, `${json}\n`);
  return {
    ...process.env,
    HERD_NODES_FILE: file,
    ...(json.length <= INLINE_NODES_MAX ? { HERD_NODES: json } : {}),
    HERD_NODE_COUNT: String(g.nodes.length),
    HERD_MANAGERS: Object.keys(g.generations).join(','),
    HERD_GENERATIONS: JSON.stringify(g.generations),
  };
}

function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // ESRCH: the group is already gone.
  }
}

/** Runs the hook in its own process group; resolves with its status (128 + signal number if killed by one). */
async function runHook(hook: string[], env: NodeJS.ProcessEnv, started: (pid: number) => void): Promise<number> {
  const child = spawn(hook[0], hook.slice(1), { stdio: ['inherit', 'inherit', 'inherit'], env, detached: true });
  const failed = await once(child, 'spawn').then(() => null, (err: Error) => err);
  const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('exit', (code, signal) => resolve([code, signal])));
  if (failed) {
    process.stderr.write(`herd run: cannot start the hook ${hook[0]}: ${failed.message}\n`);
    return 127;
  }
  started(child.pid!);
  const [code, signal] = await exited;
  // What the hook left running in its group goes with it.
  killGroup(child.pid!, 'SIGTERM');
  return code ?? 128 + (os.constants.signals[signal!] ?? 0);
}
