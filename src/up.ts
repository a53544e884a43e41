// `herd up` and `herd down`: start and stop the managers of a hosts file over ssh,
// the way the original's run_experiment.py did, then check each one from here.
//
// up: one ssh session per host runs a short sh script there. It copies the token
// from ssh's stdin into a file (never onto a command line: `ps` shows those), starts
// `herd manager` in its own session with its output in a file, and waits for the
// `listening` line or the manager's exit. The controller then waits until the
// manager answers `ping` over the network, which is what the experiment needs.
// down: asks each manager its pid (`hello`), then `kill -TERM` over ssh and waits
// until it has exited, i.e. after its own ordered shutdown of the nodes.

import { spawn } from 'node:child_process';
import { HerdClient, HerdError, ConnectOptions } from './client';
import { asHerdError, FleetOptions, Outcome, withProgress } from './fleet';
import { mapLimit } from './pool';
import { Target } from './targets';

export interface SshOptions {
  /** The ssh command, split on spaces; it must take ssh's `-o` options, then the host, then the command. */
  ssh: string[];
  /** Directory on the host where herd is installed (relative to the remote home, or absolute). */
  dir: string;
  /** Command that runs herd, inside `dir`: a remote shell fragment. */
  herd: string;
  /** Address each manager binds; default the host's address in the hosts file. */
  bind?: string;
  /** More `herd manager` flags. */
  managerArgs: string[];
  /** At most this many hosts are worked on at once. */
  fanout: number;
  /** Per host: ssh, the manager's start and the first ping (up), or its exit (down). */
  timeoutMs: number;
}

export interface UpResult {
  result: 'up' | 'already up' | 'stopped' | 'not running';
  pid: number | null;
  ms: number;
}

export type UpOutcome = Outcome<UpResult>;

/** Quotes `s` for a POSIX shell. */
const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

// `alive PID START`: PID is running, not a zombie (a manager that just exited may not be
// reaped yet), and started at START (field 22 of /proc/PID/stat, read by `started` while
// it surely was the manager): once the manager is reaped its pid can be reused, within
// moments on a busy host with a small pid_max, and a reused pid must not pass for it.
export const ALIVE = [
  `stat_of() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null; }`,
  `started() { stat_of "$1" | cut -d' ' -f20; }`,
  `alive() { s=$(stat_of "$1"); [ -n "$s" ] && [ "\${s%% *}" != Z ] && [ "$(echo "$s" | cut -d' ' -f20)" = "$2" ]; }`,
].join('\n');

/** The script `up` runs on a host: prints `pid N` once the manager listens, else its last lines (exit 1). */
function startScript(t: Target, opts: SshOptions, withToken: boolean): string {
  const base = `.herd/manager-${t.port}`;
  const args = ['manager', '--host', opts.bind ?? t.host, '--port', String(t.port), ...(withToken ? ['--token-file', '.herd/token'] : []), ...opts.managerArgs];
  const tries = Math.max(1, Math.ceil(opts.timeoutMs / 100));
  return [
    'set -e',
    ALIVE,
    `cd ${q(opts.dir)}`,
    // The manager's output, cut to its first and last lines (a usage error comes first, then the usage).
    `show() { echo "$1; the output in $PWD/${base}.out:"; if [ "$(wc -l <${base}.out)" -le 10 ]; then cat ${base}.out; else head -n 3 ${base}.out; echo ...; tail -n 5 ${base}.out; fi; exit 1; }`,
    'umask 077',
    'mkdir -p .herd',
    // Written under another name, then renamed: managers sharing the dir never read half a file.
    ...(withToken ? ['cat > .herd/token.$$', 'mv -f .herd/token.$$ .herd/token'] : []),
    `setsid ${opts.herd} ${args.map(q).join(' ')} </dev/null >${base}.out 2>&1 &`,
    'pid=$!',
    // Read before this shell can reap it (it reaps only while it waits for a command).
    'start=$(started "$pid")',
    `echo "$pid" >${base}.pid`,
    'i=0',
    `until grep -q '^listening ' ${base}.out; do`,
    '  alive "$pid" "$start" || show "the manager exited"',
    `  i=$((i+1)); [ "$i" -lt ${tries} ] || show "no listening line within ${opts.timeoutMs} ms"`,
    '  sleep 0.1',
    'done',
    'echo "pid $pid"',
  ].join('\n');
}

/** The script `down` runs on a host: SIGTERM, then wait for the exit (exit 1 if it outlives the timeout). */
function stopScript(pid: number, timeoutMs: number): string {
  const tries = Math.max(1, Math.ceil(timeoutMs / 100));
  return [
    ALIVE,
    `start=$(started ${pid})`,
    `kill -TERM ${pid} 2>/dev/null || { echo "no process ${pid}"; exit 0; }`,
    'i=0',
    `while alive ${pid} "$start"; do`,
    `  i=$((i+1)); if [ "$i" -ge ${tries} ]; then echo "pid ${pid} still running ${timeoutMs} ms after SIGTERM"; exit 1; fi`,
    '  sleep 0.1',
    'done',
  ].join('\n');
}

interface SshRun {
  code: number | null;
  output: string;
}

/** Runs `script` on `host` through ssh, with `input` on its stdin; killed after `timeoutMs`. */
function ssh(opts: SshOptions, host: string, script: string, input: string, timeoutMs: number): Promise<SshRun> {
  const [cmd, ...pre] = opts.ssh;
  // BatchMode: never wait for a password prompt nobody can answer.
  const args = [...pre, '-o', 'BatchMode=yes', '-o', `ConnectTimeout=${Math.max(1, Math.ceil(timeoutMs / 1000))}`, host, script];
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    const keep = (d: Buffer) => (output = (output + d.toString()).slice(-4096));
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.stdin.on('error', () => undefined); // ssh that exits early (unreachable host) closes its stdin
    child.stdin.end(input);
    const timer = setTimeout(() => {
      output += `\n(no answer within ${timeoutMs} ms)`;
      child.kill('SIGTERM');
    }, timeoutMs);
    child.on('error', (err) => keep(Buffer.from(`cannot run ${cmd}: ${err.message}`)));
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output: output.trim() });
    });
  });
}

function sshError(host: string, run: SshRun): HerdError {
  // ssh exits 255 for its own errors (no route, refused, auth); anything else is the script's.
  if (run.code === 255 || run.code === null) return new HerdError('UNREACHABLE', `ssh ${host}: ${run.output || `exit ${run.code}`}`);
  return new HerdError('START_FAILED', run.output || `the script on ${host} exited with ${run.code}`);
}

/** The manager's pid if it answers at `address`, null if nothing listens there (connection refused). */
async function managerPid(address: string, conn: ConnectOptions): Promise<number | null> {
  let client: HerdClient | undefined;
  try {
    // A client name makes connect send hello, whose reply names the manager's pid.
    client = await HerdClient.connect(address, { ...conn, client: 'herd up' });
    await client.ping();
    return client.manager!.pid;
  } catch (err) {
    if (err instanceof HerdError && err.code === 'UNREACHABLE' && /ECONNREFUSED/.test(err.message)) return null;
    throw err;
  } finally {
    await client?.close();
  }
}

async function upOne(t: Target, conn: ConnectOptions, opts: SshOptions): Promise<UpResult> {
  const t0 = Date.now();
  const ms = () => Date.now() - t0;
  // Nothing there (refused, no route): start one. Anything else (a wrong token) is an answer.
  const running = await managerPid(t.address, conn).catch((err: HerdError) => {
    if (err.code === 'UNREACHABLE') return null;
    throw err;
  });
  if (running !== null) return { result: 'already up', pid: running, ms: ms() };
  const run = await ssh(opts, t.host, startScript(t, opts, conn.token !== undefined), conn.token !== undefined ? `${conn.token}\n` : '', opts.timeoutMs + 10_000);
  const started = run.code === 0 ? /^pid (\d+)$/m.exec(run.output) : null;
  if (!started) throw sshError(t.host, run);
  // Listening there is not yet reachable from here (a firewall, the wrong --bind): ping until the deadline.
  for (;;) {
    try {
      const pid = await managerPid(t.address, conn);
      if (pid !== null) return { result: 'up', pid, ms: ms() };
    } catch (err) {
      if (err instanceof HerdError && err.code !== 'UNREACHABLE') throw err;
    }
    if (ms() >= opts.timeoutMs) {
      throw new HerdError('UNREACHABLE', `the manager started (pid ${started[1]}) but does not answer ping at ${t.address} within ${opts.timeoutMs} ms: check the firewall and the address it binds (--bind)`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function downOne(t: Target, conn: ConnectOptions, opts: SshOptions): Promise<UpResult> {
  const t0 = Date.now();
  const pid = await managerPid(t.address, conn);
  if (pid === null) return { result: 'not running', pid: null, ms: Date.now() - t0 };
  const run = await ssh(opts, t.host, stopScript(pid, opts.timeoutMs), '', opts.timeoutMs + 10_000);
  if (run.code !== 0) throw sshError(t.host, run);
  return { result: 'stopped', pid, ms: Date.now() - t0 };
}

/** `herd up` (start) or `herd down` (stop) on every target; one host's failure never holds up another. */
export function upDown(which: 'up' | 'down', targets: Target[], conn: FleetOptions, opts: SshOptions): Promise<UpOutcome[]> {
  const one = which === 'up' ? upOne : downOne;
  return withProgress(conn, targets.length, (done) =>
    mapLimit(targets, opts.fanout, async (t): Promise<UpOutcome> => {
      let outcome: UpOutcome;
      try {
        outcome = { address: t.address, result: await one(t, conn, opts) };
      } catch (err) {
        outcome = { address: t.address, error: asHerdError(err) };
      }
      done(outcome);
      return outcome;
    }),
  );
}

export function showUp(r: UpResult): string[] {
  return [`${r.result}${r.pid !== null ? `  pid ${r.pid}` : ''}  (${(r.ms / 1000).toFixed(1)}s)`];
}
