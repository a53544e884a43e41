// Marks the test run's environment with a session id. Every manager, node and
// helper process a test starts inherits it, so global-teardown.ts can tell
// whether any of them outlived the run.

import { randomBytes } from 'node:crypto';

export default function setup(): void {
  process.env.HERD_TEST_SESSION = randomBytes(8).toString('hex');
}
