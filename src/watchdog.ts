// The watchdog: a small process that outlives its manager by design.
//
// The manager starts it in its own session with a pipe on stdin that only the
// manager holds. When the manager dies, however it dies (SIGKILL, OOM killer, a
// crash), the kernel closes the pipe; the watchdog then reaps whatever the run's
// state file lists, in every layer, and exits. On a clean exit the manager
// deletes the state file first, so there is nothing left to do.
//
// Usage (by src/containment.ts only): node watchdog.js <state file>

import { reapRun } from './runstate';

const file = process.argv[2];
// Signals aimed at the manager's terminal or service must not take the watchdog first.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => undefined);

process.stdin.on('data', () => undefined);
process.stdin.on('close', () => {
  const report = reapRun(file);
  if (report.runs > 0) {
    process.stderr.write(
      `${JSON.stringify({ level: 'warn', time: new Date().toISOString(), message: `manager of ${file} died; killed ${report.groups} node group(s), ${report.cgroup} process(es) in its cgroup, ${report.sweep} found by run id`, ...report })}\n`,
    );
  }
  process.exit(0);
});
