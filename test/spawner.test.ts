// Both ways of starting a node (src/spawner.ts) against the OS: what the child gets
// (session, descriptors, signals, argv, environment) and how its end is reported.

import { closeSync, existsSync, openSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createSpawner, Spawner } from '../src/spawner';
import { eventually, tmpDir } from './helpers';

const native = (() => {
  try {
    return createSpawner('posix_spawn').spawner;
  } catch (err) {
    return (err as Error).message;
  }
})();
const requireNative = process.env.HERD_SPAWN === 'posix_spawn';

interface Ended { code: number | null; signal: NodeJS.Signals | null }

/** Starts `file args` through `spawner`; resolves with its pid once started, and `ended` once reaped. */
function start(spawner: Spawner, file: string, args: string[], outFd: number, env: NodeJS.ProcessEnv = process.env): Promise<{ pid: number; ended: Promise<Ended> }> {
  return new Promise((resolve, reject) => {
    let endedResolve!: (e: Ended) => void;
    const ended = new Promise<Ended>((r) => (endedResolve = r));
    let count = 0;
    try {
      const pid = spawner.spawn(file, args, env, outFd, {
        exit: (code, signal) => {
          if (++count > 1) throw new Error(`exit reported ${count} times`);
          endedResolve({ code, signal });
        },
        error: reject,
      });
      if (pid !== undefined) resolve({ pid, ended });
    } catch (err) {
      reject(err);
    }
  });
}

/** Fields of /proc/<pid>/stat after the command name: [state, ppid, pgrp, session, ...]. */
const statFields = (pid: number): string[] => {
  const s = readFileSync(`/proc/${pid}/stat`, 'latin1');
  return s.slice(s.lastIndexOf(')') + 2).split(' ');
};
const statusField = (pid: number, name: string): string => new RegExp(`^${name}:\\s*(\\S+)`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'latin1'))![1];

/** This process's descriptors above 2 without close-on-exec (O_CLOEXEC is octal 02000000 in fdinfo's flags). */
const inheritable = (): number[] =>
  readdirSync('/proc/self/fd')
    .map(Number)
    .filter((fd) => {
      try {
        return fd > 2 && (parseInt(/^flags:\s*(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'latin1'))![1], 8) & 0o2000000) === 0;
      } catch {
        return false; // the directory's own descriptor, closed by now
      }
    })
    .sort((a, b) => a - b);

const cases: [string, Spawner | string][] = [
  ['posix_spawn', native],
  ['child_process', createSpawner('child_process').spawner],
];

describe.each(cases)('%s', (kind, spawner) => {
  if (typeof spawner === 'string') {
    if (requireNative) test('is available', () => { throw new Error(`HERD_SPAWN=posix_spawn: ${spawner}`); });
    else test.skip(`SKIPPED: ${spawner}; set HERD_SPAWN=posix_spawn to make this fail`, () => {});
    return;
  }
  const dir = tmpDir();
  let out: number;
  let held: number;
  beforeEach(() => {
    out = openSync(path.join(dir, `${kind}.log`), 'a');
    held = openSync(path.join(dir, 'held-open'), 'a');
  });
  afterEach(() => {
    closeSync(out);
    closeSync(held);
  });

  test(`is ${kind}`, () => expect(spawner.kind).toBe(kind));

  test('the child leads its own session and group, has stdin /dev/null, stdout and stderr on the file, no other descriptor, no signal blocked, none of the standard ones ignored', async () => {
    const { pid, ended } = await start(spawner, 'sleep', ['30'], out);
    try {
      await eventually(() => readFileSync(`/proc/${pid}/comm`, 'latin1') === 'sleep\n', 3000, 'exec');
      // argv[0] as given, not the path it was found at.
      expect(readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0')).toEqual(['sleep', '30', '']);
      const [, ppid, pgrp, session] = statFields(pid);
      expect([Number(ppid), Number(pgrp), Number(session)]).toEqual([process.pid, pid, pid]);
      // Beyond 0-2, only what this process holds without close-on-exec (jest's own, if any): none of
      // Node's. Read until it settles: the comm changes a moment before the exec closes descriptors.
      const expected = JSON.stringify([0, 1, 2, ...inheritable()]);
      const childFds = () => readdirSync(`/proc/${pid}/fd`).map(Number).sort((a, b) => a - b);
      await eventually(() => JSON.stringify(childFds()) === expected, 2000, 'the exec closed the descriptors').catch(() => undefined);
      const fds = childFds();
      expect(JSON.stringify(fds)).toBe(expected);
      expect(fds.map((fd) => readlinkSync(`/proc/${pid}/fd/${fd}`))).not.toContain(path.join(dir, 'held-open'));
      expect(readlinkSync(`/proc/${pid}/fd/0`)).toBe('/dev/null');
      expect(readlinkSync(`/proc/${pid}/fd/1`)).toBe(path.join(dir, `${kind}.log`));
      expect(readlinkSync(`/proc/${pid}/fd/2`)).toBe(path.join(dir, `${kind}.log`));
      // Node ignores SIGPIPE itself; a node must not inherit that. Through posix_spawn, glibc's two
      // internal signals (32 and 33, bits 31 and 32) start ignored; glibc programs set their own.
      expect(statusField(pid, 'SigBlk')).toMatch(/^0+$/);
      expect(BigInt(`0x${statusField(pid, 'SigIgn')}`) & ~0x180000000n).toBe(0n);
      process.kill(-pid, 'SIGTERM');
      expect(await ended).toEqual({ code: null, signal: 'SIGTERM' });
    } finally {
      if (existsSync(`/proc/${pid}`)) process.kill(-pid, 'SIGKILL');
    }
    // Reaped: no zombie left.
    expect(existsSync(`/proc/${pid}`)).toBe(false);
  });

  test('argv and environment as given; the exit code as the process ended; output in the file', async () => {
    const file = path.join(dir, `${kind}-args.log`);
    const fd = openSync(file, 'a');
    try {
      const { ended } = await start(spawner, 'sh', ['-c', 'echo "$0|$1|$HERD_X" ; echo err >&2; exit 7', 'a b', 'c'], fd, { PATH: process.env.PATH, HERD_X: 'x=y' });
      expect(await ended).toEqual({ code: 7, signal: null });
    } finally {
      closeSync(fd);
    }
    expect(readFileSync(file, 'utf8')).toBe('a b|c|x=y\nerr\n');
  });

  test('a script without a #! line runs with /bin/sh, as execvp runs it', async () => {
    const script = path.join(dir, `${kind}-plain.sh`);
    const log = path.join(dir, `${kind}-plain.log`);
    writeFileSync(script, 'echo "plain $1"\n', { mode: 0o755 });
    const fd = openSync(log, 'a');
    try {
      const { ended } = await start(spawner, script, ['x'], fd);
      expect(await ended).toEqual({ code: 0, signal: null });
    } finally {
      closeSync(fd);
    }
    expect(readFileSync(log, 'utf8')).toBe('plain x\n');
    // The same found through PATH.
    const fd2 = openSync(log, 'w');
    try {
      const { ended } = await start(spawner, path.basename(script), ['y'], fd2, { PATH: `${dir}:${process.env.PATH}` });
      expect(await ended).toEqual({ code: 0, signal: null });
    } finally {
      closeSync(fd2);
    }
    expect(readFileSync(log, 'utf8')).toBe('plain y\n');
  });

  test('a command that does not exist fails with ENOENT', async () => {
    await expect(start(spawner, path.join(dir, 'missing'), [], out)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  test('kill signals a process group, says false once the group is gone, and throws on a bad signal', async () => {
    const { pid, ended } = await start(spawner, 'sleep', ['1000'], out);
    expect(spawner.kill(-pid, 'SIGTERM')).toBe(true);
    expect(await ended).toEqual({ code: null, signal: 'SIGTERM' });
    expect(spawner.kill(-pid, 'SIGKILL')).toBe(false);
    expect(() => spawner.kill(pid, 'SIGNOPE' as NodeJS.Signals)).toThrow();
  });

  test('200 children ending at once: each reported once, with its own status, and reaped', async () => {
    const children = await Promise.all(Array.from({ length: 200 }, (_, i) => start(spawner, 'sh', ['-c', `sleep 0.3; exit ${i % 100}`], out)));
    const ends = await Promise.all(children.map((c) => c.ended));
    expect(ends.map((e) => e.code)).toEqual(children.map((_, i) => i % 100));
    for (const { pid } of children) expect(existsSync(`/proc/${pid}`)).toBe(false);
  });
});
