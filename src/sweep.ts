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

const RUN_PREFIX = `${RUN_ID_VAR}=`;
const GENERATION_PREFIX = 'HERD_GENERATION=';
const INDEX_PREFIX = 'HERD_INDEX=';

/** The run membership that `environ` (the bytes of /proc/<pid>/environ) records, or null if it carries another run id or none. */
function membership(pid: number, environ: Buffer, runId: string): RunProcess | null {
  // One pass; the first definition of a name counts.
  let run: string | null = null;
  let generation: string | null = null;
  let index: string | null = null;
  for (const entry of environ.toString('latin1').split('\0')) {
    if (run === null && entry.startsWith(RUN_PREFIX)) run = entry.slice(RUN_PREFIX.length);
    else if (generation === null && entry.startsWith(GENERATION_PREFIX)) generation = entry.slice(GENERATION_PREFIX.length);
    else if (index === null && entry.startsWith(INDEX_PREFIX)) index = entry.slice(INDEX_PREFIX.length);
  }
  if (run !== runId) return null;
  const num = (v: string | null) => (v !== null && /^\d+$/.test(v) ? Number(v) : null);
  return { pid, generation: num(generation), index: num(index) };
}

/** The run membership of one process, or null if it carries another run id or none (or is gone). */
export function runOf(pid: number, runId: string): RunProcess | null {
  try {
    return membership(pid, readFileSync(`/proc/${pid}/environ`), runId);
  } catch {
    return null; // gone, or not ours to read
  }
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
    const p = membership(pid, environ, runId);
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
