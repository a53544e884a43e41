// Pre-flight: how many nodes this host's limits allow one manager to run.
//
// Each node costs the manager FDS_PER_NODE file descriptors and the host at
// least one process. The binding limits are the manager's RLIMIT_NOFILE, the
// user's RLIMIT_NPROC (which counts threads, and which root is exempt from) and
// the kernel's pid_max. `--max-nodes` defaults to what they allow.

import { readFileSync } from 'node:fs';

/** Descriptors the manager keeps for itself: listener, logs, controllers, spawn's transient pipes. */
export const FD_RESERVE = 64;
/**
 * Descriptors the manager holds per node: its connection, its /proc/<pid>/stat (kept
 * open by the sampler, src/pidstat.ts) and its pidfd (src/spawner.ts; none with the
 * child_process fallback, which is counted the same).
 */
export const FDS_PER_NODE = 3;

/** Nodes that RLIMIT_NOFILE `nofile` leaves room for. */
export const nodesForNofile = (nofile: number): number => Math.floor((nofile - FD_RESERVE) / FDS_PER_NODE);
/** Why that is the bound, for messages. */
export const nofileReason = (nofile: number): string =>
  `RLIMIT_NOFILE ${nofile} (${FDS_PER_NODE} descriptors per node: its connection, its /proc stat file and its pidfd; ${FD_RESERVE} kept for the manager)`;

export interface HostLimits {
  /** Soft RLIMIT_NOFILE of the manager. */
  nofile: number;
  /** Soft RLIMIT_NPROC, or null when unlimited or not enforced (root). */
  nproc: number | null;
  pidMax: number;
  /** Tasks (processes and threads) on the host now. */
  tasks: number;
  /** Nodes these limits allow, and the limit that binds. */
  maxNodes: number;
  binding: string;
}

function softLimit(limits: string, name: string): number | null {
  const line = limits.split('\n').find((l) => l.startsWith(name));
  const value = line?.slice(name.length).trim().split(/\s+/)[0];
  return value === undefined || value === 'unlimited' ? null : Number(value);
}

export function readLimits(): HostLimits {
  const limits = readFileSync('/proc/self/limits', 'utf8');
  const nofile = softLimit(limits, 'Max open files') ?? 1 << 20;
  const nproc = process.getuid?.() === 0 ? null : softLimit(limits, 'Max processes');
  const pidMax = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
  // The fourth field of /proc/loadavg is running/total scheduling entities.
  const tasks = Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[3].split('/')[1]);
  const bounds: [string, number][] = [
    [nofileReason(nofile), nodesForNofile(nofile)],
    [`pid_max ${pidMax} with ${tasks} tasks running`, pidMax - tasks - FD_RESERVE],
  ];
  if (nproc !== null) bounds.push([`RLIMIT_NPROC ${nproc} (counts every thread of the user)`, nproc - tasks]);
  const [binding, bound] = bounds.reduce((a, b) => (b[1] < a[1] ? b : a));
  return { nofile, nproc, pidMax, tasks, maxNodes: Math.max(0, bound), binding };
}
