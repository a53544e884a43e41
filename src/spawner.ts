// How a node's process is started, signalled and reaped: through native/spawn.c
// (posix_spawn, then its pidfd watched on the event loop; kill(2) that returns
// ESRCH rather than throwing it) where that addon was built and the kernel has
// pidfds (Linux 5.4+), else through child_process.spawn. Both give the child its
// own session and process group, stdin from /dev/null, stdout and stderr on the
// node's output file, default signal dispositions, and report its end once.
//
// posix_spawn is the default for speed: child_process.spawn forks, copying the
// manager's page tables for every node (see native/spawn.c and the README's
// Benchmarks). HERD_SPAWN=child_process chooses the fallback.

import { spawn as nodeSpawn } from 'node:child_process';
import { accessSync, constants as fsConstants, existsSync, statSync } from 'node:fs';
import { constants } from 'node:os';
import path from 'node:path';
import { getSystemErrorName } from 'node:util';
import { PACKAGE_ROOT } from './package';

export interface ChildEvents {
  /** Exactly once, after the process was reaped. */
  exit: (code: number | null, signal: NodeJS.Signals | null) => void;
  /** A start that failed after spawn() returned (child_process reports ENOENT this way). */
  error: (err: NodeJS.ErrnoException) => void;
}

export interface Spawner {
  /** `posix_spawn` or `child_process`, for the startup log. */
  readonly kind: string;
  /**
   * Starts `file` (looked up in PATH) with `args`. Returns its pid, or undefined if
   * `events.error` will follow; throws an errno error for a start refused at once.
   */
  spawn(file: string, args: readonly string[], env: NodeJS.ProcessEnv, outFd: number, events: ChildEvents): number | undefined;
  /** kill(2) (a negative pid names a process group): false if there was no such process, throws on any other error. */
  kill(pid: number, signal: NodeJS.Signals): boolean;
}

interface Addon {
  /** Starts watching children, or null where the kernel has no pidfds. */
  init(onExit: (pid: number, code: number, signal: number) => void): ((file: string, argv: readonly string[], env: string[], outFd: number) => number) | null;
  /** kill(2): 0, or -errno. */
  kill(pid: number, signal: number): number;
}

const ADDON = path.join(PACKAGE_ROOT, 'build/Release/herd_spawn.node');

const signalNames = new Map<number, NodeJS.Signals>(Object.entries(constants.signals).map(([name, n]) => [n, name as NodeJS.Signals]));
// libuv names fewer errnos than the kernel has (not ENOEXEC, for one).
const errnoNames = new Map<number, string>(Object.entries(constants.errno).map(([name, n]) => [n, name]));

function errnoError(errno: number, syscall: string, file: string): NodeJS.ErrnoException {
  const code = errnoNames.get(errno) ?? getSystemErrorName(-errno);
  const err: NodeJS.ErrnoException = new Error(`${syscall} ${file} ${code}`);
  err.code = code;
  err.errno = -errno;
  err.syscall = syscall;
  err.path = file;
  return err;
}

/**
 * Where execvp finds `file`: itself if it names a path, else the first executable
 * of that name in `PATH` (execvp's default when there is none), or null.
 */
function inPath(file: string, PATH = '/bin:/usr/bin'): string | null {
  if (file.includes('/')) return file;
  for (const dir of PATH.split(':')) {
    const candidate = path.join(dir || '.', file);
    try {
      accessSync(candidate, fsConstants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

class NativeSpawner implements Spawner {
  readonly kind = 'posix_spawn';
  private readonly children = new Map<number, ChildEvents>();
  /** Commands found in PATH, by name and PATH. */
  private readonly resolved = new Map<string, string>();
  /** posix_spawn(file, argv, env), stdout and stderr on outFd: a pid, or -errno. */
  private readonly start: (file: string, argv: readonly string[], env: string[], outFd: number) => number;

  constructor(private readonly addon: Addon) {
    if (typeof addon.kill !== 'function') throw new Error('it was built from an older native/spawn.c (run npm run build)');
    const start = addon.init((pid, code, signal) => this.exited(pid, code, signal));
    if (start === null) throw new Error('this kernel has no pidfds (Linux 5.4 or later is needed)');
    this.start = start;
  }

  kill(pid: number, signal: NodeJS.Signals): boolean {
    const r = this.addon.kill(pid, constants.signals[signal]);
    if (r === 0) return true;
    if (r === -constants.errno.ESRCH) return false;
    throw errnoError(-r, 'kill', String(pid));
  }

  spawn(file: string, args: readonly string[], env: NodeJS.ProcessEnv, outFd: number, events: ChildEvents): number {
    const envp: string[] = [];
    for (const key in env) {
      const value = env[key];
      if (value !== undefined) envp.push(`${key}=${value}`);
    }
    // Looked up in the node's PATH, as child_process does; found once per command and PATH.
    const key = `${file}\0${env.PATH}`;
    let resolved = this.resolved.get(key) ?? inPath(file, env.PATH);
    // argv[0] is the command as given, as child_process gives it.
    const argv = [file, ...args];
    let pid = resolved === null ? -constants.errno.ENOENT : this.start(resolved, argv, envp, outFd);
    if (pid === -constants.errno.ENOENT && this.resolved.delete(key)) {
      // Moved since it was found: look again.
      resolved = inPath(file, env.PATH);
      if (resolved !== null) pid = this.start(resolved, argv, envp, outFd);
    }
    // A script without a #! line: run it with /bin/sh, as execvp (and so child_process) does.
    if (pid === -constants.errno.ENOEXEC) pid = this.start('/bin/sh', ['/bin/sh', resolved!, ...args], envp, outFd);
    if (pid < 0) throw errnoError(-pid, 'posix_spawn', file);
    this.resolved.set(key, resolved!);
    this.children.set(pid, events);
    return pid;
  }

  private exited(pid: number, code: number, signal: number): void {
    const events = this.children.get(pid);
    if (events === undefined) return;
    this.children.delete(pid);
    events.exit(code < 0 ? null : code, signal > 0 ? (signalNames.get(signal) ?? null) : null);
  }
}

const nodeSpawner: Spawner = {
  kind: 'child_process',
  spawn(file, args, env, outFd, events) {
    const child = nodeSpawn(file, args, { detached: true, stdio: ['ignore', outFd, outFd], env });
    // Without a listener, a spawn error (ENOENT, EACCES, EAGAIN, EMFILE) would crash the manager.
    child.on('error', events.error);
    if (child.pid === undefined) return undefined;
    child.on('exit', events.exit);
    return child.pid;
  },
  kill(pid, signal) {
    try {
      process.kill(pid, signal);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
      throw err;
    }
  },
};

/**
 * The spawner to use, and why it is not the native one if it is not. `choice` is
 * HERD_SPAWN: `child_process` forces the fallback, `posix_spawn` makes its absence
 * an error.
 */
export function createSpawner(choice: string | undefined): { spawner: Spawner; note: string | null } {
  if (choice !== undefined && choice !== 'posix_spawn' && choice !== 'child_process') {
    throw new Error(`HERD_SPAWN=${choice}: expected posix_spawn or child_process`);
  }
  if (choice === 'child_process') return { spawner: nodeSpawner, note: 'HERD_SPAWN=child_process' };
  let why: string;
  if (!existsSync(ADDON)) why = `${ADDON} was not built (npm run build needs a C compiler and Node's headers)`;
  else {
    try {
      return { spawner: new NativeSpawner(require(ADDON) as Addon), note: null };
    } catch (err) {
      why = `${ADDON} cannot be used: ${(err as Error).message}`;
    }
  }
  if (choice === 'posix_spawn') throw new Error(`HERD_SPAWN=posix_spawn, but ${why}`);
  return { spawner: nodeSpawner, note: why };
}
