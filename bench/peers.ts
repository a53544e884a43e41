// The peers, for `npm run bench`: the same start and stop of N light nodes through pm2 (npm)
// and supervisor (Debian), where they are installed. Each runs with its own state in the
// bench's tmp dir (PM2_HOME, a supervisord.conf), its daemon started before the clock runs,
// and is shut down afterwards. Times are wall clock through each tool's own CLI, as a user
// would drive it: `pm2 start ecosystem.config.js` / `pm2 delete all`, and
// `supervisorctl start light:*` / `supervisorctl stop light:*`.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { now, round, sleep } from './common';

export interface PeerRun { peer: 'pm2' | 'supervisor'; version: string; n: number; startMs: number[]; stopMs: number[] }
export type PeerOutcome = PeerRun | { peer: 'pm2' | 'supervisor'; n: number; skipped: string };

function which(cmd: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const p = path.join(dir, cmd);
    if (dir && existsSync(p)) return p;
  }
  return null;
}

/** Waits until `count()` is `want`, polling; throws after `timeoutMs`. */
async function until(what: string, count: () => number, want: number, timeoutMs: number): Promise<void> {
  const t0 = now();
  for (;;) {
    const c = count();
    if (c === want) return;
    if (now() - t0 > timeoutMs) throw new Error(`${what}: ${c} of ${want} after ${timeoutMs} ms`);
    await sleep(20);
  }
}

/**
 * `script`: the light node; `alive()`: how many of its processes run now (the bench's pgrep).
 * Started until every process is up, stopped until none is left.
 */
export async function pm2Cost(script: string, n: number, reps: number, dir: string, alive: () => number): Promise<PeerOutcome> {
  const pm2 = which('pm2');
  if (!pm2) return { peer: 'pm2', n, skipped: 'pm2 is not on PATH (npm install -g pm2, or put its bin dir on PATH, to include it)' };
  mkdirSync(dir, { recursive: true });
  const env = { ...process.env, PM2_HOME: path.join(dir, 'pm2-home') };
  const run = (args: string[]) => execFileSync(pm2, args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024 });
  const eco = path.join(dir, 'ecosystem.config.js');
  const apps = Array.from({ length: n }, (_, i) => ({ name: `light-${i}`, script, interpreter: 'none', autorestart: false }));
  writeFileSync(eco, `module.exports = ${JSON.stringify({ apps })};\n`);
  const version = run(['--version']).trim().split('\n').pop()!;
  const out: PeerRun = { peer: 'pm2', version, n, startMs: [], stopMs: [] };
  try {
    run(['ping']); // starts the daemon
    for (let r = 0; r < reps; r++) {
      let t0 = now();
      run(['start', eco]);
      await until('pm2 start', alive, n, 120_000);
      out.startMs.push(round(now() - t0, 1));
      t0 = now();
      run(['delete', 'all']);
      await until('pm2 delete', alive, 0, 60_000);
      out.stopMs.push(round(now() - t0, 1));
    }
  } finally {
    run(['kill']);
  }
  return out;
}

export async function supervisorCost(script: string, n: number, reps: number, dir: string, alive: () => number): Promise<PeerOutcome> {
  const supervisord = which('supervisord');
  const ctl = which('supervisorctl');
  if (!supervisord || !ctl) return { peer: 'supervisor', n, skipped: 'supervisord is not installed (apt-get install supervisor to include it)' };
  mkdirSync(dir, { recursive: true });
  const conf = path.join(dir, 'supervisord.conf');
  writeFileSync(
    conf,
    [
      '[unix_http_server]',
      `file=${dir}/supervisor.sock`,
      '[supervisord]',
      `logfile=${dir}/supervisord.log`,
      `pidfile=${dir}/supervisord.pid`,
      `childlogdir=${dir}`,
      `minfds=${Math.max(1024, 4 * n + 64)}`,
      '[rpcinterface:supervisor]',
      'supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface',
      '[supervisorctl]',
      `serverurl=unix://${dir}/supervisor.sock`,
      '[program:light]',
      `command=${script}`,
      'process_name=%(program_name)s_%(process_num)d',
      `numprocs=${n}`,
      'autostart=false',
      'autorestart=false',
      'startsecs=0',
      'stopasgroup=true',
      'killasgroup=true',
      'stdout_logfile=NONE',
      'stderr_logfile=NONE',
      '',
    ].join('\n'),
  );
  const run = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024 });
  const version = run(supervisord, ['--version']).trim();
  const out: PeerRun = { peer: 'supervisor', version, n, startMs: [], stopMs: [] };
  run(supervisord, ['-c', conf]);
  try {
    const t0 = now();
    for (;;) {
      try {
        run(ctl, ['-c', conf, 'pid']);
        break;
      } catch {
        if (now() - t0 > 20_000) throw new Error(`supervisord did not answer within 20 s (see ${dir}/supervisord.log)`);
        await sleep(100);
      }
    }
    for (let r = 0; r < reps; r++) {
      let t = now();
      run(ctl, ['-c', conf, 'start', 'light:*']);
      await until('supervisorctl start', alive, n, 120_000);
      out.startMs.push(round(now() - t, 1));
      t = now();
      run(ctl, ['-c', conf, 'stop', 'light:*']);
      await until('supervisorctl stop', alive, 0, 60_000);
      out.stopMs.push(round(now() - t, 1));
    }
  } finally {
    try {
      run(ctl, ['-c', conf, 'shutdown']);
    } catch {
      // already gone
    }
  }
  return out;
}
