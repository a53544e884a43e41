// Shared helper for tests that need a real Python with the `msgpack` package
// (Debian's python3-msgpack). The `python3` on PATH may be a build without it,
// so the interpreter is an absolute path (override with HERD_PYTHON).
//
// Without it, Python tests are skipped with a message — unless
// HERD_REQUIRE_PYTHON=1 (CI sets it), in which case they fail.

import { execFileSync, spawnSync } from 'node:child_process';

export const PYTHON = process.env.HERD_PYTHON || '/usr/bin/python3';

/** True when a missing Python/msgpack must fail the run instead of skipping. */
export const REQUIRE_PYTHON = process.env.HERD_REQUIRE_PYTHON === '1';

let available: boolean | undefined;
let unavailableReason = '';

/** Whether `PYTHON` runs and can `import msgpack` (checked once per test file). */
export function pythonHasMsgpack(): boolean {
  if (available === undefined) {
    const r = spawnSync(PYTHON, ['-c', 'import msgpack'], { encoding: 'utf8', timeout: 15000 });
    available = r.status === 0;
    if (!available) {
      const why = r.error ? r.error.message : (r.stderr || '').trim().split('\n').pop() || `exit ${r.status}`;
      unavailableReason = `${PYTHON} cannot import msgpack (${why})`;
    }
  }
  return available;
}

/** Why Python tests cannot run ('' when they can). */
export function pythonUnavailableReason(): string {
  pythonHasMsgpack();
  return unavailableReason;
}

/**
 * `describe` for tests that need Python with msgpack. When it is missing the body
 * is not run at all (so its beforeAll/afterAll hooks do not start anything): one
 * skipped test carries the reason, or, with HERD_REQUIRE_PYTHON=1, one failing test.
 */
export function describeIfPython(name: string, fn: () => void): void {
  if (pythonHasMsgpack()) {
    describe(name, fn);
    return;
  }
  const reason = pythonUnavailableReason();
  describe(name, () => {
    if (REQUIRE_PYTHON) {
      test('Python with msgpack is available (required by HERD_REQUIRE_PYTHON=1)', () => {
        throw new Error(`HERD_REQUIRE_PYTHON=1 but ${reason}; install python3-msgpack or set HERD_PYTHON`);
      });
    } else {
      test.skip(`SKIPPED: ${reason}; install python3-msgpack, or set HERD_REQUIRE_PYTHON=1 to make this fail`, () => {});
    }
  });
}

/** Runs `PYTHON -c code args...` with `input` on stdin and returns its stdout. Throws on non-zero exit. */
export function runPython(code: string, input?: Uint8Array, args: string[] = []): Buffer {
  return execFileSync(PYTHON, ['-c', code, ...args], {
    input,
    maxBuffer: 64 * 1024 * 1024,
    timeout: 30000,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}
