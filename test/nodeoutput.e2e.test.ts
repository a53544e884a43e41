// Node output against real managers, real nodes and the real file system: a node
// writing 50 MB, rotation, the last lines of a node that died (status, herd status),
// `herd logs` with and without --follow, and a log dir deleted under a running manager.

import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { HerdClient } from '../src/client';
import { CLI, errorOf, eventually, FIXTURES, herd, RunningManager, startManager, tmpDir, vmRssBytes } from './helpers';

jest.setTimeout(60000);

/** Node output sizes are checked every 50 ms here (1 s by default), so rotations happen within a test. */
const FAST_CHECKS = { HERD_NODE_LOG_CHECK_MS: '50' };

const sizeOf = (file: string) => statSync(file, { throwIfNoEntry: false })?.size ?? 0;
const genDir = (m: RunningManager, g: number) => path.join(m.logDir, 'nodes', `gen-${g}`);

let m: RunningManager | null = null;
let client: HerdClient | null = null;
afterEach(async () => {
  await client?.close();
  client = null;
  if (m) expect(await m.stop()).toBe(0);
  m = null;
});

async function manager(command: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<HerdClient> {
  m = await startManager(['--node-command', path.join(FIXTURES, command), ...args], env);
  client = await HerdClient.connect(m.address);
  return client;
}

test('a node writing 50 MB as fast as it can finishes; the manager RSS stays flat; rotation keeps two files near the limit', async () => {
  const max = 2 * 1024 * 1024;
  const c = await manager('chatty.sh', ['--node-log-max-bytes', String(max)], FAST_CHECKS);
  const rssBefore = vmRssBytes(m!.proc.pid!);
  const { generation } = await c.generate(1);
  // It must end on its own: a node blocked on its output would never get there.
  await eventually(async () => (await c.status()).counts.killed === 1, 30000, 'the chatty node to exit on its own');
  const rssAfter = vmRssBytes(m!.proc.pid!);
  const [node] = (await c.status()).nodes;
  expect(node).toMatchObject({ exitCode: 0, signal: null });
  // Its last line is "done". A rotation at the very end may have cut the line before it short and
  // lost the rest (copy-truncate drops what lands between the copy and the truncate), and the tail,
  // read across the two files, then joins that fragment to "done".
  expect(node.tail!.at(-1)).toMatch(/^[A-Za-z0-9+/=]*done$/);

  // Rotated: the current file and one .1, nothing left over (a rotation under way may still hold a .tmp).
  const files = () => readdirSync(genDir(m!, generation)).sort();
  await eventually(() => files().join() === 'node-0.log,node-0.log.1', 5000, 'a rotation under way to finish');
  expect(files()).toEqual(['node-0.log', 'node-0.log.1']);
  // How far past the limit a file gets depends on how often the checks run against how fast the node
  // writes (on a loaded 2-core machine a check can lag by seconds at 80 MB/s), so no size bound here:
  // the proof of rotation is the .1 file above (on a loaded machine there may be only one rotation,
  // so nothing need have been dropped yet).
  // Offsets count the whole output (base64 of 37.5 MB: 50,657,905 bytes, less what the copy-truncate
  // windows lost, more on a busy machine); on disk is its end, from `start`.
  const head = await c.logs(0, { maxBytes: 0 });
  const onDisk = files().reduce((sum, f) => sum + statSync(path.join(genDir(m!, generation), f)).size, 0);
  expect(head.size - head.start).toBe(onDisk);
  expect(head.size).toBeGreaterThan(40_000_000);
  expect(head.size).toBeLessThanOrEqual(50_657_905);
  // The manager never held the output: its RSS did not grow with it.
  expect(rssAfter - rssBefore).toBeLessThan(32 * 1024 * 1024);
});

test('a node that prints and exits 1 shows its last lines in status and in herd status; herd logs prints its output, also after a reset', async () => {
  const c = await manager('fails-by-index.sh');
  await c.generate(3);
  await eventually(async () => (await c.status()).counts.killed === 2, 10000, 'nodes 0 and 1 to exit');
  const nodes = (await c.status()).nodes;
  expect(nodes[0]).toMatchObject({ state: 'killed', exitCode: 1, tail: ['step 17', 'step 18', 'step 19', 'step 20', 'fatal: cannot reach the interface at 127.0.0.1:7071'] });
  expect(nodes[1]).toMatchObject({ state: 'killed', exitCode: 0, tail: ['all good'] });
  expect(nodes[2].tail).toBeUndefined();

  // By default, the last three lines of nodes that failed, under their rows.
  const plain = await herd(['status', '--manager', m!.address]);
  expect(plain.code).toBe(0);
  const rows = plain.stdout.split('\n');
  const row0 = rows.findIndex((l) => /^\s+0\s+\d+\s+killed/.test(l));
  expect(rows.slice(row0 + 1, row0 + 4)).toEqual(['           | step 19', '           | step 20', '           | fatal: cannot reach the interface at 127.0.0.1:7071']);
  expect(rows[row0 + 4]).toMatch(/^\s+1\s+\d+\s+killed/);
  expect(plain.stdout).not.toContain('all good');
  // --tail: every line kept, of every node that exited on its own.
  const all = await herd(['status', '--tail', '--manager', m!.address]);
  expect(all.stdout).toContain('           | step 17\n');
  expect(all.stdout).toContain('           | all good\n');

  const expected = `${Array.from({ length: 20 }, (_, i) => `step ${i + 1}\n`).join('')}fatal: cannot reach the interface at 127.0.0.1:7071\n`;
  expect(await herd(['logs', '0', '--manager', m!.address])).toEqual({ code: 0, stdout: expected, stderr: '' });
  // The last part starts at a line: a cut one is skipped, a whole one kept.
  expect((await herd(['logs', '0', '--bytes', '57', '--manager', m!.address])).stdout).toBe('fatal: cannot reach the interface at 127.0.0.1:7071\n');
  expect((await herd(['logs', '0', '--bytes', '60', '--manager', m!.address])).stdout).toBe('step 20\nfatal: cannot reach the interface at 127.0.0.1:7071\n');
  // A reset forgets the nodes, not their output.
  await c.reset();
  expect((await c.status()).nodes).toEqual([]);
  expect((await herd(['logs', '1', '--manager', m!.address])).stdout).toBe('all good\n');

  const unknown = await herd(['logs', '7', '--manager', m!.address]);
  expect(unknown.code).toBe(1);
  expect(unknown.stderr).toMatch(/UNKNOWN_NODE: index 7 names no node of generation 1/);
  expect((await errorOf(c.logs(0, { generation: 9 }))).code).toBe('UNKNOWN_NODE');
  expect((await errorOf(c.logs(0, { maxBytes: 10 * 1024 * 1024 }))).code).toBe('BAD_ARGUMENT');
  // Indexes are per manager: several managers need one named.
  expect((await herd(['logs', '0', '--manager', m!.address, '--manager', '127.0.0.1:1'])).code).toBe(2);
});

test('herd logs --follow streams what the node writes after it started, across rotations, and ends when the node exits', async () => {
  const stopFile = path.join(tmpDir(), 'stop');
  const c = await manager('ticker.sh', ['--node-log-max-bytes', '4096'], { ...FAST_CHECKS, TICK_STOP: stopFile });
  await c.generate(1);
  await eventually(async () => (await c.logs(0, { maxBytes: 0 })).size > 500, 10000, 'the first ticks');
  const before = (await c.logs(0, { maxBytes: 0 })).size;

  const follow = spawn(process.execPath, [CLI, 'logs', '0', '--follow', '--bytes', '100000000', '--manager', m!.address]);
  let stdout = '';
  follow.stdout.on('data', (d) => (stdout += d));
  const exited = new Promise<number | null>((resolve) => follow.on('exit', resolve));
  // Streaming, not a dump at the end: ticks written after it started arrive while the node runs
  // (about 100 bytes each: 10 KB more is two rotations at 4 KiB).
  const firstNew = Math.ceil(before / 100) + 100;
  await eventually(() => stdout.includes(`tick ${firstNew} `), 20000, `tick ${firstNew} through --follow`);
  writeFileSync(stopFile, '');
  expect(await exited).toBe(0);

  const lines = stdout.trimEnd().split('\n');
  expect(lines.at(-1)).toBe('bye');
  const seen = lines.slice(0, -1).map((l) => Number(/^tick (\d+) /.exec(l)![1]));
  // In order, never twice; a line can only go missing in a rotation's copy-truncate window.
  for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeGreaterThan(seen[i - 1]);
  expect(seen.length).toBeGreaterThanOrEqual(seen.at(-1)! - seen[0] + 1 - 3);
  expect((await c.logs(0, { maxBytes: 0 })).start).toBeGreaterThan(0);
});

test('deleting the log dir under a running manager: one warning, the manager keeps serving, logs says why, deleted files stay capped', async () => {
  const max = 2048;
  const c = await manager('ticker.sh', ['--node-log-max-bytes', String(max)], FAST_CHECKS);
  const { nodes } = await c.generate(3);
  await eventually(() => sizeOf(path.join(genDir(m!, 1), 'node-2.log')) > 0, 10000, 'output from the nodes');
  const managerLog = path.join(m!.logDir, 'manager.log');
  rmSync(m!.logDir, { recursive: true, maxRetries: 5, retryDelay: 10 }); // retried: an append by path can land mid-removal

  // A check that runs while rm is still deleting the files (the dir not gone yet) reports the files instead.
  const warning = /the log dir \S+ was deleted while \d node\(s\) of generation 1 still write to files in it|\d node output file\(s\) in \S+ were deleted or replaced while their nodes still write to them/;
  await eventually(() => warning.test(m!.stderr()), 10000, 'the warning');
  // Many more checks see the same missing files: still one warning.
  await new Promise((r) => setTimeout(r, 1500));
  expect(m!.stderr().split('\n').filter((l) => warning.test(l))).toHaveLength(1);
  // manager.log is gone too, but the manager still writes to it: read it where it is still open.
  const fd = readdirSync(`/proc/${m!.proc.pid}/fd`).find((f) => readlinkSync(`/proc/${m!.proc.pid}/fd/${f}`) === `${managerLog} (deleted)`);
  expect(fd).toBeDefined();
  expect(readFileSync(`/proc/${m!.proc.pid}/fd/${fd}`, 'utf8').split('\n').filter((l) => warning.test(l))).toHaveLength(1);

  expect((await c.status()).counts.spawning + (await c.status()).counts.running).toBe(3);
  const err = await errorOf(c.logs(1));
  expect(err.code).toBe('UNKNOWN_NODE');
  expect(err.message).toMatch(/node-1\.log was deleted/);
  // The nodes still write into their deleted files, well past the limit, and those are held to it.
  const lastTick = (text: string) => Math.max(0, ...[...text.matchAll(/tick (\d+) /g)].map((t) => Number(t[1])));
  for (const n of nodes) {
    const deleted = `/proc/${n.pid}/fd/1`;
    await eventually(() => lastTick(readFileSync(deleted, 'utf8')) * 100 > 4 * max, 10000, `node ${n.index} to write 4 times the limit`);
    await eventually(() => statSync(deleted).size <= max + 1024, 5000, `node ${n.index}'s deleted file to be truncated`);
  }

  await c.reset();
  await c.generate(1);
  await eventually(async () => (await c.logs(0)).data.length > 0, 10000, 'output of the next generation');
});
