// Telemetry end to end: real managers, real nodes, real files. The per-generation
// timeline (its file and the `timeline` command), `herd export`, `herd top` on a pipe
// and on a terminal, checked against the files and against /proc.

import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { HerdClient } from '../src/client';
import { readStat } from '../src/proc';
import type { StatsEvent, TimelineLine, TimelineNodeChange, TimelineSample } from '../src/protocol';
import { fakeManager, Fake } from './fake-manager';
import { cgroupActive, CLI, errorOf, eventually, FIXTURES, herd, RunningManager, startManager, tmpDir } from './helpers';

jest.setTimeout(60000);

const readLines = (file: string): TimelineLine[] =>
  // Only whole lines: the file may exist before its first batch is written.
  readFileSync(file, 'utf8').split('\n').slice(0, -1).map((l) => JSON.parse(l) as TimelineLine);
const samplesIn = (lines: TimelineLine[]) => lines.filter((l): l is TimelineSample => l.type === 'sample');
const changesIn = (lines: TimelineLine[]) => lines.filter((l): l is TimelineNodeChange => l.type === 'node');
const timelineOf = (m: RunningManager, generation: number) => path.join(m.logDir, 'timeline', `gen-${generation}.jsonl`);

/** A minimal CSV reader (quoted cells with "" escapes), enough for what export writes. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  for (const line of text.trimEnd().split('\n')) {
    const cells: string[] = [];
    const re = /("(?:[^"]|"")*"|[^,]*)(,|$)/g;
    for (let m = re.exec(line); m && m.index < line.length; m = re.exec(line)) {
      cells.push(m[1].startsWith('"') ? m[1].slice(1, -1).replace(/""/g, '"') : m[1]);
      if (m[2] === '') break;
    }
    if (line.endsWith(',')) cells.push('');
    rows.push(cells);
  }
  return rows;
}

describe('the timeline of a real manager', () => {
  let m: RunningManager;
  let c: HerdClient;
  let gen1: TimelineLine[];
  let status1: Awaited<ReturnType<HerdClient['status']>>;

  beforeAll(async () => {
    m = await startManager(['--stats-interval-ms', '100']);
    c = await HerdClient.connect(m.address);
    // Generation 1: three example nodes, one killed on its own, then the rest by a reset.
    await c.generate(3, { wait: 'connected' });
    status1 = await c.status();
    await eventually(() => existsSync(timelineOf(m, 1)) && samplesIn(readLines(timelineOf(m, 1))).length >= 4, 10_000, 'samples in gen-1.jsonl');
    await c.kill({ index: 0 });
    await c.reset();
    // Generation 2 exists, so generation 1 is complete and no longer current.
    await c.generate(1, { wait: 'spawned' });
    await eventually(() => readLines(timelineOf(m, 1)).filter((l) => l.type === 'node' && l.to === 'killed').length === 3, 5000, 'the kills in gen-1.jsonl');
    gen1 = readLines(timelineOf(m, 1));
  });
  afterAll(async () => {
    await c?.close();
    expect(await m?.stop()).toBe(0);
  });

  test('a header, then every sample and node change, each with wall-clock and monotonic time', () => {
    const [header, ...rest] = gen1;
    expect(header).toEqual({
      type: 'header', format: 1, generation: 1, n: 3, time: expect.any(Number), mono: expect.any(Number),
      manager: { version: expect.any(String), hostname: expect.any(String), pid: m.proc.pid, address: m.address }, intervalMs: 100,
    });
    expect(rest.every((l) => l.type !== 'header' && l.generation === 1)).toBe(true);
    // Written in the order things happened: mono never goes back, samples strictly advance.
    for (let i = 1; i < gen1.length; i++) expect(gen1[i].mono).toBeGreaterThanOrEqual(gen1[i - 1].mono);
    const samples = samplesIn(gen1);
    for (let i = 1; i < samples.length; i++) expect(samples[i].mono).toBeGreaterThan(samples[i - 1].mono);
    // Wall-clock and monotonic time advance together (no clock jumps in a test).
    const first = gen1[0];
    const last = gen1.at(-1)!;
    expect(Math.abs(last.time - first.time - (last.mono - first.mono))).toBeLessThan(50);
    for (const s of samples) {
      expect(s.host).toMatchObject({ cpus: expect.any(Array), load: expect.any(Number), steal: expect.any(Number), iowait: expect.any(Number), loadavg: expect.any(Array) });
      for (const n of s.nodes) expect(status1.nodes.find((x) => x.index === n.index)?.pid).toBe(n.pid);
    }
    // Samples while all three ran list all three.
    expect(samples.some((s) => s.nodes.length === 3)).toBe(true);
    expect(gen1.filter((l) => l.type === 'ready')).toEqual([{ type: 'ready', time: expect.any(Number), mono: expect.any(Number), generation: 1, n: 3 }]);
  });

  test('every node change has its latency: start to connect as status reports it, stop signal to reaped', () => {
    const changes = changesIn(gen1);
    for (const index of [0, 1, 2]) {
      const mine = changes.filter((l) => l.index === index);
      expect(mine.map((l) => `${l.from}>${l.to}`)).toEqual(['launching>spawning', 'spawning>running', 'running>stopping', 'stopping>killed']);
      expect(mine[0].latencyMs).toBeNull();
      const info = status1.nodes.find((n) => n.index === index)!;
      expect(mine.every((l) => l.pid === info.pid)).toBe(true);
      // The same interval status shows as CONNECTED: its ms timestamps are read a moment before the
      // timeline's, in the same synchronous chain, where a loaded 2-core machine can preempt the manager
      // (13 ms seen in CI with the whole suite running).
      expect(Math.abs(mine[1].latencyMs! - (Number(info.connectedAt) - Number(info.startedAt)))).toBeLessThan(50);
      // Each latency is the time since the node's previous change, on the monotonic clock.
      for (let i = 1; i < 4; i++) expect(mine[i].latencyMs).toBeCloseTo(mine[i].mono - mine[i - 1].mono, 2);
      // The example node exits 0 on SIGTERM, well within the grace period.
      expect(mine[3]).toMatchObject({ exitCode: 0, signal: null, outcome: 'terminated' });
      expect(mine[3].latencyMs).toBeGreaterThan(0);
      expect(mine[3].latencyMs).toBeLessThan(1000);
    }
    // Index 0 was killed on its own, before the reset stopped the others.
    const stops = changes.filter((l) => l.to === 'stopping');
    expect(stops[0].index).toBe(0);
  });

  test('the timeline command pages through the file in whole lines, byte for byte', async () => {
    const file = readFileSync(timelineOf(m, 1));
    const pages: Buffer[] = [];
    let offset = 0;
    for (;;) {
      const page = await c.timeline({ generation: 1, offset, maxBytes: 700 });
      expect(page).toMatchObject({ generation: 1, current: false, offset, size: file.length });
      const data = Buffer.from(page.data);
      expect(page.next).toBe(offset + data.length);
      // Lines are short enough here that every page ends at a line end.
      expect(data.at(-1)).toBe(0x0a);
      expect(data.length).toBeLessThanOrEqual(700);
      pages.push(data);
      offset = page.next;
      if (page.eof) break;
    }
    expect(pages.length).toBeGreaterThan(2);
    expect(Buffer.concat(pages).equals(file)).toBe(true);
    // Without a generation: the current one (2), from the start.
    const now = await c.timeline();
    expect(now).toMatchObject({ generation: 2, current: true, offset: 0 });
    expect(JSON.parse(Buffer.from(now.data).toString('utf8').split('\n')[0])).toMatchObject({ type: 'header', generation: 2, n: 1 });
  });

  test('timeline errors: unknown generations, offsets past the end and bad parameters are BAD_ARGUMENT', async () => {
    for (const [req, pattern] of [
      [() => c.timeline({ generation: 99 }), /no generation 99 yet \(the current one is 2\)/],
      [() => c.timeline({ generation: 0 }), /no generation 0/],
      [() => c.timeline({ generation: 1, offset: 1e9 }), /offset 1000000000 is past the end of gen-1.jsonl/],
      [() => c.timeline({ maxBytes: 0 }), /maxBytes must be at least 1/],
      [() => c.timeline({ maxBytes: 5 << 20 }), /maxBytes must be an unsigned integer <= 4194304/],
      [() => c.timeline({ generation: 'one' as unknown as number }), /generation must be an unsigned integer/],
    ] as const) {
      const e = await errorOf(req());
      expect(e.code).toBe('BAD_ARGUMENT');
      expect(e.message).toMatch(pattern);
    }
  });

  test('herd export --csv: one row per node per sample, the same numbers as the JSONL; events and host views too', async () => {
    const nodes = await herd(['export', '--csv', '--generation', '1', '--manager', m.address]);
    expect(nodes.code).toBe(0);
    expect(nodes.stderr).toMatch(new RegExp(`^${m.address}  generation 1: \\d+ nodes rows\\n$`));
    const [head, ...rows] = parseCsv(nodes.stdout);
    expect(head).toEqual(['time', 'mono', 'host', 'generation', 'index', 'pid', 'cpu', 'rss']);
    const expected = samplesIn(gen1).flatMap((s) => s.nodes.map((n) => [s.time, s.mono, m.address, 1, n.index, n.pid, n.cpu, n.rss].map(String)));
    expect(rows).toEqual(expected);

    const events = await herd(['export', '--what', 'events', '--generation', '1', '--manager', m.address]);
    const [eHead, ...eRows] = parseCsv(events.stdout);
    expect(eHead).toEqual(['time', 'mono', 'host', 'generation', 'type', 'index', 'pid', 'from', 'to', 'latencyMs', 'exitCode', 'signal', 'outcome', 'failure']);
    expect(eRows).toHaveLength(changesIn(gen1).length + 1); // and the ready line
    const killed = eRows.find((r) => r[8] === 'killed')!;
    expect(killed.slice(9, 13)).toEqual([expect.stringMatching(/^\d+(\.\d+)?$/), '0', '', 'terminated']);

    const out = path.join(tmpDir(), 'host.csv');
    const host = await herd(['export', '--what', 'host', '--generation', '1', '--out', out, '--manager', m.address]);
    expect(host.stdout).toBe(`${m.address}  generation 1: ${samplesIn(gen1).length} host rows to ${out}\n`);
    const [hHead, ...hRows] = parseCsv(readFileSync(out, 'utf8'));
    const cores = samplesIn(gen1)[0].host.cpus.length;
    expect(hHead).toEqual(['time', 'mono', 'host', 'generation', 'cpu', 'steal', 'iowait', 'load1', 'load5', 'load15', 'memUsed', 'memTotal', ...Array.from({ length: cores }, (_, i) => `cpu${i}`)]);
    expect(hRows.map((r) => Number(r[4]))).toEqual(samplesIn(gen1).map((s) => s.host.load));
  });

  test('herd export from two managers: a host column tells them apart; one unreachable manager fails alone', async () => {
    const m2 = await startManager(['--stats-interval-ms', '100', '--node-command', path.join(FIXTURES, 'never-connects.sh')]);
    try {
      const c2 = await HerdClient.connect(m2.address);
      await c2.generate(2);
      await eventually(() => existsSync(timelineOf(m2, 1)) && samplesIn(readLines(timelineOf(m2, 1))).length >= 2, 5000, 'samples on the second manager');
      await c2.close();
      const both = await herd(['export', '--generation', '1', '--manager', m.address, '--manager', m2.address, '--manager', '127.0.0.1:1']);
      expect(both.code).toBe(1);
      expect(both.stderr).toMatch(/127\.0\.0\.1:1 +error UNREACHABLE/);
      const rows = parseCsv(both.stdout).slice(1);
      expect(new Set(rows.map((r) => r[2]))).toEqual(new Set([m.address, m2.address]));
      const secondRows = rows.filter((r) => r[2] === m2.address);
      expect(secondRows.length).toBeGreaterThanOrEqual(4);
      expect(new Set(secondRows.map((r) => r[4]))).toEqual(new Set(['0', '1']));
      // JSONL: every line, each with its host.
      const jsonl = await herd(['export', '--jsonl', '--generation', '1', '--manager', m2.address]);
      const lines = jsonl.stdout.trimEnd().split('\n').map((l) => JSON.parse(l));
      expect(lines[0]).toMatchObject({ host: m2.address, type: 'header', generation: 1, n: 2 });
      // Nothing exported: no CSV header on stdout, only the error.
      const none = await herd(['export', '--generation', '99', '--manager', m2.address]);
      expect(none).toMatchObject({ code: 1, stdout: '' });
      expect(none.stderr).toMatch(/BAD_ARGUMENT/);
    } finally {
      expect(await m2.stop()).toBe(0);
    }
  });
});

test('the timeline survives a deleted log directory: one warning, then it resumes by itself, header first', async () => {
  const m = await startManager(['--stats-interval-ms', '100', '--node-command', path.join(FIXTURES, 'never-connects.sh')]);
  try {
    const c = await HerdClient.connect(m.address);
    await c.generate(2);
    const file = timelineOf(m, 1);
    await eventually(() => existsSync(file) && samplesIn(readLines(file)).length >= 2, 5000, 'samples');
    rmSync(m.logDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 10 }); // retried: an append by path can land mid-removal
    await eventually(() => /cannot write the timeline/.test(m.stderr()), 5000, 'the warning');
    // Some more samples fail to be written: still one warning, and the manager serves.
    await new Promise((r) => setTimeout(r, 500));
    expect(m.stderr().match(/cannot write the timeline/g)).toHaveLength(1);
    expect(m.stderr()).toMatch(/cannot write the timeline .*gen-1\.jsonl \(ENOENT.*recreate it/);
    expect((await errorOf(c.timeline({ generation: 1 }))).code).toBe('BAD_ARGUMENT');
    // Only the log dir comes back; the manager re-creates its timeline/ and starts the file with its header.
    mkdirSync(m.logDir);
    await eventually(() => existsSync(file) && samplesIn(readLines(file)).length >= 2, 5000, 'samples again');
    const lines = readLines(file);
    expect(lines[0]).toMatchObject({ type: 'header', generation: 1, n: 2 });
    expect(lines.filter((l) => l.type === 'header')).toHaveLength(1);
    expect(m.stderr()).toMatch(/timeline .*gen-1\.jsonl is writable again/);
    expect((await c.timeline({ generation: 1 })).generation).toBe(1);
    await c.close();
  } finally {
    expect(await m.stop()).toBe(0);
  }
});

describe('herd top', () => {
  let m: RunningManager;
  let pids: { busy: number; idle: number };

  beforeAll(async () => {
    // Node 0 spins, node 1 sleeps.
    const dir = tmpDir();
    const script = path.join(dir, 'busy-or-idle.sh');
    writeFileSync(script, `#!/bin/sh\nif [ "$HERD_INDEX" = 0 ]; then exec ${process.execPath} -e 'for(;;){}'; fi\nexec sleep 1000\n`);
    chmodSync(script, 0o755);
    m = await startManager(['--stats-interval-ms', '250', '--node-command', script]);
    const c = await HerdClient.connect(m.address);
    const g = await c.generate(2);
    await c.close();
    pids = { busy: g.nodes.find((n) => n.index === 0)!.pid, idle: g.nodes.find((n) => n.index === 1)!.pid };
  });
  afterAll(async () => {
    expect(await m?.stop()).toBe(0);
  });

  test('on a pipe: one block per sample, nodes by CPU, the same CPU and RSS as /proc', async () => {
    const top = spawn(process.execPath, [CLI, 'top', '--manager', m.address], { stdio: ['ignore', 'pipe', 'pipe'] });
    const blocks: { text: string; ticks: number; at: bigint }[] = [];
    let buf = '';
    top.stdout.on('data', (d) => {
      buf += d;
      // A block ends with an empty line; note the kernel's count for the busy node as each arrives.
      for (let end = buf.indexOf('\n\n'); end >= 0; end = buf.indexOf('\n\n')) {
        blocks.push({ text: buf.slice(0, end), ticks: readStat(pids.busy)!.cpuTicks, at: process.hrtime.bigint() });
        buf = buf.slice(end + 2);
      }
    });
    try {
      await eventually(() => blocks.length >= 9, 15_000, 'nine blocks');
    } finally {
      top.kill('SIGTERM');
    }
    const code = await new Promise((resolve) => top.on('exit', resolve));
    expect(code).toBe(0);
    const rows = blocks.map(({ text }) => {
      const [head, tableHead, ...nodes] = text.split('\n');
      expect(head).toMatch(new RegExp(`^\\d\\d:\\d\\d:\\d\\d\\.\\d{3}  ${m.address.replace(/\./g, '\\.')}  gen 1  cpu [\\d.]+% \\(steal [\\d.]+%, iowait [\\d.]+%\\)  cores .*  load [\\d.]+ [\\d.]+ [\\d.]+  mem `));
      expect(tableHead.trim().split(/\s+/)).toEqual(['INDEX', 'PID', 'CPU%', 'RSS']);
      return nodes.map((l) => l.trim().split(/\s+/));
    });
    // The busy node first (sorted by CPU) once it spins, and its CPU is what the kernel charged it.
    const later = rows.slice(1);
    const busyCpu = later.map((r) => Number(r.find((x) => Number(x[1]) === pids.busy)![2]));
    const idleCpu = later.map((r) => Number(r.find((x) => Number(x[1]) === pids.idle)![2]));
    const hz = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'latin1' }).trim());
    const truth = ((blocks.at(-1)!.ticks - blocks[0].ticks) / hz / (Number(blocks.at(-1)!.at - blocks[0].at) / 1e9)) * 100;
    expect(Math.abs(busyCpu.reduce((a, b) => a + b, 0) / busyCpu.length - truth)).toBeLessThan(15);
    expect(Math.max(...idleCpu)).toBeLessThan(5);
    if (truth > 50) expect(later.filter((r) => Number(r[0][1]) === pids.busy).length).toBeGreaterThanOrEqual(later.length - 1);
    // RSS as /proc/<pid>/stat says, to the table's rounding (MiB with one decimal under 10).
    const statRss = readStat(pids.idle)!.rssPages * Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'latin1' }).trim());
    const shown = rows.at(-1)!.find((x) => Number(x[1]) === pids.idle)!;
    const units: Record<string, number> = { B: 1, KiB: 1024, MiB: 1024 ** 2 };
    expect(Math.abs(Number(shown[3]) * units[shown[4]] - statRss)).toBeLessThanOrEqual(0.05 * units[shown[4]]);
  });

  test('several managers: a block per manager and sample, each host\'s nodes sorted by CPU; an unreachable one is reported, not fatal', async () => {
    // Two fakes that answer subscribe and then push a stats event every 100 ms, as a manager does.
    const fakes: Fake[] = [];
    const timers: NodeJS.Timeout[] = [];
    for (const cpus of [[5, 70], [40, 1]]) {
      fakes.push(
        await fakeManager((msg, send) => {
          if (msg.cmd !== 'subscribe') return void send({ id: msg.id, ok: false, error: { code: 'UNKNOWN_COMMAND', message: msg.cmd } });
          send({ id: msg.id, ok: true, topics: msg.topics });
          const host = { cpus: [10, 20], load: 15, memUsed: 2 ** 30, memTotal: 2 ** 32, cpusSteal: [0, 1], steal: 0.5, iowait: 0, loadavg: [0.5, 0.25, 0.1] };
          const nodes = cpus.map((cpu, index) => ({ pid: 100 + index, index, cpu, rss: 2 ** 20 }));
          timers.push(setInterval(() => send({ event: 'stats', time: Date.now(), generation: 7, host, nodes }), 100));
        }),
      );
    }
    const top = spawn(process.execPath, [CLI, 'top', '--manager', fakes[0].address, '--manager', fakes[1].address, '--manager', '127.0.0.1:1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    top.stdout.on('data', (d) => (out += d));
    try {
      await eventually(() => fakes.every((f) => (out.match(new RegExp(`  ${f.address}  gen 7`, 'g')) ?? []).length >= 2), 10_000, 'two blocks from each manager');
    } finally {
      top.kill('SIGTERM');
      timers.forEach(clearInterval);
    }
    expect(await new Promise((resolve) => top.on('exit', resolve))).toBe(0);
    await Promise.all(fakes.map((f) => f.close()));
    expect(out).toMatch(/^127\.0\.0\.1:1  error UNREACHABLE: /m);
    const block = (address: string) => out.split('\n\n').find((b) => b.includes(`  ${address}  gen 7`))!.split('\n');
    expect(block(fakes[0].address)[0]).toMatch(/gen 7  cpu 15\.0% \(steal 0\.5%, iowait 0\.0%\)  cores 10\.0% 20\.0%  load 0\.50 0\.25 0\.10  mem 1\.0 GiB \/ 4\.0 GiB$/);
    expect(block(fakes[0].address).slice(2).map((l) => l.trim().split(/\s+/)[0])).toEqual(['1', '0']);
    expect(block(fakes[1].address).slice(2).map((l) => l.trim().split(/\s+/)[0])).toEqual(['0', '1']);
    // With no manager left, top ends by itself, with status 1.
    const none = await herd(['top', '--manager', '127.0.0.1:1']);
    expect(none.code).toBe(1);
    expect(none.stdout).toMatch(/^127\.0\.0\.1:1  error UNREACHABLE/);
  });

  const hasScript = existsSync('/usr/bin/script');
  (hasScript ? test : test.skip)('on a terminal (script -q): redraws in place on the alternate screen; q restores the terminal', async () => {
    const child: ChildProcess = spawn('/usr/bin/script', ['-qfc', `stty rows 20 cols 150; ${process.execPath} ${CLI} top --manager ${m.address}`, '/dev/null'], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    let timer: NodeJS.Timeout | undefined;
    try {
      // Two screens with the nodes: the first sample, then a redraw.
      await eventually(() => (out.match(/\x1b\[Hherd top/g) ?? []).length >= 3 && (out.match(/INDEX/g) ?? []).length >= 2, 15_000, 'two redraws');
      child.stdin!.write('q');
      expect(await Promise.race([exited, new Promise((r) => (timer = setTimeout(() => r('timeout'), 5000)))])).toBe(0);
    } finally {
      clearTimeout(timer); // else it holds jest open after the run
      child.kill('SIGKILL');
    }
    expect(out.startsWith('\x1b[?1049h\x1b[?25l')).toBe(true);
    // Restored: cursor shown, alternate screen left, then the last screen printed as plain text.
    const restore = out.lastIndexOf('\x1b[?25h\x1b[?1049l');
    expect(restore).toBeGreaterThan(0);
    const after = out.slice(restore).replace(/\r/g, '');
    expect(after).toMatch(new RegExp(`${m.address.replace(/\./g, '\\.')}  gen 1  cpu `));
    expect(after).toMatch(new RegExp(`\\n +0 +${pids.busy} +[\\d.]+`));
    expect(after.indexOf('\x1b', 12)).toBe(-1);
  });
});

test('sleeping nodes in their cgroups are not read one by one: a few reads per sample, not one per node; a node that runs is read at once (skipped without a writable cgroup v2)', async () => {
  const N = 300;
  const dir = tmpDir();
  const script = path.join(dir, 'wakeable.sh');
  // Sleeps; SIGUSR1 makes it spin for a while (the shell's own loop: nothing forked).
  writeFileSync(script, `#!/bin/sh\ntrap 'i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done' USR1\nwhile :; do sleep 1000 & wait $!; done\n`);
  chmodSync(script, 0o755);
  const m = await startManager(['--stats-interval-ms', '100', '--node-command', script]);
  const c = await HerdClient.connect(m.address);
  try {
    if (!(await cgroupActive(m))) {
      console.warn('skipped: this host offers no writable cgroup v2 with cgroup.kill (see manager.log)');
      return;
    }
    const g = await c.generate(N);
    const samples: StatsEvent[] = [];
    c.on('event', (e) => {
      if (e.event === 'stats' && e.nodes.length === N) samples.push(e);
    });
    await c.subscribe(['stats']);
    await eventually(() => samples.length >= 3, 10_000, 'three samples of every node');
    // Read syscalls of the whole manager (every thread) over 20 samples: reading every node
    // would be at least N per sample; carried forward, a handful (host counters, the cgroup's).
    const syscr = () => Number(/^syscr: (\d+)$/m.exec(readFileSync(`/proc/${m.proc.pid}/io`, 'latin1'))![1]);
    const from = { reads: syscr(), samples: samples.length };
    await eventually(() => samples.length >= from.samples + 20, 10_000, 'twenty more samples');
    const perSample = (syscr() - from.reads) / (samples.length - from.samples);
    // At most 9 carried samples in a row: 2 or 3 of the 20 read every node.
    expect(perSample).toBeLessThan(N / 3);
    for (const n of samples.at(-1)!.nodes) {
      expect(n.cpu).toBe(0);
      expect(n.rss).toBeGreaterThan(0);
    }
    // A node that runs moves the run's counter: the next samples read it, and show its CPU.
    const woken = g.nodes[7];
    const seen = samples.length;
    process.kill(woken.pid, 'SIGUSR1');
    await eventually(() => samples.slice(seen).some((e) => e.nodes.find((n) => n.pid === woken.pid)!.cpu > 20), 10_000, 'the woken node busy in a sample');
  } finally {
    await c.reset().catch(() => undefined);
    await c.close();
    expect(await m.stop()).toBe(0);
  }
});
