// The last layer of containment: find processes by the run id in their environment.
//
// Every node is started with HERD_RUN_ID=<this manager's run id>, and whatever it
// starts inherits it, including descendants that left the node's process group
// with setsid. Scanning /proc/<pid>/environ finds them all (unless a process
// scrubs its environment, which the cgroup layer covers where the host has one).
// Only processes that carry this run id are ever signalled.

import { readdirSync, readFileSync } from 'node:fs';

export const RUN_ID_VAR = 'HERD_RUN_ID';

export interface RunProcess {
  pid: number;
  /** HERD_GENERATION / HERD_INDEX from its environment, when present. */
  generation: number | null;
  index: number | null;
}

function envValue(environ: Buffer, name: string): string | null {
  const prefix = `${name}=`;
  for (const entry of environ.toString('latin1').split('\0')) if (entry.startsWith(prefix)) return entry.slice(prefix.length);
  return null;
}

/** The run membership of one process, or null if it carries another run id or none (or is gone). */
export function runOf(pid: number, runId: string): RunProcess | null {
  let environ: Buffer;
  try {
    environ = readFileSync(`/proc/${pid}/environ`);
  } catch {
    return null; // gone, or not ours to read
  }
  if (envValue(environ, RUN_ID_VAR) !== runId) return null;
  const num = (name: string) => {
    const v = envValue(environ, name);
    return v !== null && /^\d+$/.test(v) ? Number(v) : null;
  };
  return { pid, generation: num('HERD_GENERATION'), index: num('HERD_INDEX') };
}

/** Every live process that carries `runId` (optionally only those `keep` selects). */
export function findRun(runId: string, keep: (p: RunProcess) => boolean = () => true): RunProcess[] {
  const found: RunProcess[] = [];
  const needle = Buffer.from(`${RUN_ID_VAR}=${runId}`);
  for (const name of readdirSync('/proc')) {
    if (name.charCodeAt(0) > 57) continue; // not a pid (digits sort before letters)
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    let environ: Buffer;
    try {
      environ = readFileSync(`/proc/${name}/environ`);
    } catch {
      continue;
    }
    // Cheap prefilter before parsing (a zombie's environ is empty).
    if (environ.indexOf(needle) < 0) continue;
    const p = runOf(pid, runId);
    if (p && keep(p)) found.push(p);
  }
  return found;
}

const SIGKILL_BIT = 1n << 8n; // signal 9, in the pending-signal masks of /proc/<pid>/status

/** A SIGKILL is already pending (say, from its group's kill, not yet processed on a busy host): it is dying, not a stray. */
function dying(pid: number): boolean {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'latin1');
    return [/^ShdPnd:\s*([0-9a-f]+)/m, /^SigPnd:\s*([0-9a-f]+)/m].some((re) => {
      const m = re.exec(status);
      return m !== null && (BigInt(`0x${m[1]}`) & SIGKILL_BIT) !== 0n;
    });
  } catch {
    return true; // gone
  }
}

/** SIGKILLs every process of the run that `keep` selects; returns how many were signalled (the dying are not counted). */
export function sweepRun(runId: string, keep?: (p: RunProcess) => boolean): number {
  let killed = 0;
  for (const p of findRun(runId, keep)) {
    if (dying(p.pid)) continue;
    try {
      process.kill(p.pid, 'SIGKILL');
      killed++;
    } catch {
      // ESRCH: it exited between the scan and the signal.
    }
  }
  return killed;
}
