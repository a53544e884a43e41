// The test run itself must not leak: after the last test, look for live
// processes that carry the run's session id (set by global-setup.ts); any found
// are killed and the run fails, naming them.

import { readdirSync, readFileSync } from 'node:fs';
import { isAlive } from '../src/proc';

const MARK = 'HERD_TEST_SESSION';

function marked(session: string): number[] {
  const needle = `${MARK}=${session}`;
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d) && Number(d) !== process.pid)
    .map(Number)
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(needle) && isAlive(pid);
      } catch {
        return false;
      }
    });
}

export default async function teardown(): Promise<void> {
  const session = process.env[MARK]!;
  // Watchdogs and nodes of the last managers need a moment to go.
  const deadline = Date.now() + 3000;
  let left = marked(session);
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    left = marked(session);
  }
  if (left.length === 0) return;
  const described = left.map((pid) => `${pid} ${readFileSync(`/proc/${pid}/cmdline`, 'latin1').replace(/\0/g, ' ').trim()}`);
  for (const pid of left) process.kill(pid, 'SIGKILL');
  throw new Error(`the test run leaked ${left.length} process(es) (now killed):\n  ${described.join('\n  ')}`);
}
