// The dashboard of a real `herd manager --dashboard 0`: its page and assets over
// real HTTP, its event stream through a generate and a reset with real nodes, and
// the flags that must refuse to expose it. Also `--inspect` on this offline host.

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { HerdClient } from '../src/client';
import { ConfigError, parseManagerArgs } from '../src/config';
import { readStat } from '../src/proc';
import { CLI, eventually, ROOT, RunningManager, startManager, tmpDir } from './helpers';
import { dashboardUrl, get, SseReader } from './sse';

/** Every http(s) URL in `text` that points anywhere but this page's own host (the SVG namespace is a name, not a fetch). */
function externalUrls(text: string): string[] {
  return (text.match(/https?:\/\/[^\s"'<>)\\]+/g) ?? []).filter((u) => !/^http:\/\/(127\.0\.0\.1|localhost)[:/]/.test(u) && u !== 'http://www.w3.org/2000/svg');
}

/** The node cells as the page would hold them, from `init` and the `nodes` batches after it. */
function cellsOf(sse: SseReader): Map<number, [number, number | null, string, string | null]> {
  const cells = new Map<number, [number, number | null, string, string | null]>();
  const init = sse.events.findIndex((e) => e.name === 'init');
  for (const e of sse.events.slice(init)) {
    if (e.name === 'init') for (const c of e.data.nodes) cells.set(c[0], c);
    if (e.name !== 'nodes') continue;
    if (e.data.fresh) cells.clear();
    for (const c of e.data.changes) cells.set(c[0], c);
    for (const i of [...cells.keys()]) if (i >= e.data.count) cells.delete(i);
  }
  return cells;
}

describe('herd manager --dashboard', () => {
  let m: RunningManager;
  let url: string;
  let client: HerdClient;

  beforeAll(async () => {
    m = await startManager(['--dashboard', '0', '--stats-interval-ms', '200']);
    url = await dashboardUrl(m);
    client = await HerdClient.connect(m.address);
  });
  afterAll(async () => {
    await client?.close();
    await m?.stop();
  });

  test('serves the page and its assets from the package, on loopback, with no external URL', async () => {
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    for (const [route, file, type] of [['', 'index.html', 'text/html'], ['app.js', 'app.js', 'text/javascript'], ['style.css', 'style.css', 'text/css'], ['favicon.svg', 'favicon.svg', 'image/svg+xml']]) {
      const r = await get(url + route);
      expect(r.status).toBe(200);
      expect(r.headers['content-type']).toContain(type);
      expect(r.headers['content-security-policy']).toContain("default-src 'none'");
      expect(r.body).toBe(readFileSync(path.join(ROOT, 'dashboard', file), 'utf8'));
      expect(externalUrls(r.body)).toEqual([]);
    }
    expect((await get(`${url}nope`)).status).toBe(404);
    expect((await get(url, {}, 'POST')).status).toBe(405);
    // DNS rebinding: another site's name resolved to 127.0.0.1 is refused; a tunnel's local port is not.
    expect((await get(url, { Host: 'evil.example:80' })).status).toBe(403);
    expect((await get(url, { Host: 'localhost:9999' })).status).toBe(200);
    expect((await get(url, { Host: '[::1]:7080' })).status).toBe(200);
  });

  test('the stream pushes the charts, node states through generate and reset, the numbers of `stats`, and the event log', async () => {
    const sse = new SseReader(url);
    try {
      const init = await sse.waitFor('init');
      expect(sse.status).toBe(200);
      expect(init.title).toBe(m.address);
      expect(init.manager).toEqual(['manager.idle']);
      expect(init.charts.manager.model.id).toBe('manager');
      expect(init.charts.node.svg).toContain('data-state="node.running"');
      expect(externalUrls(JSON.stringify(init))).toEqual([]);

      const { nodes } = await client.generate(3, { wait: 'connected' });
      await eventually(() => [...cellsOf(sse).values()].filter((c) => c[2] === 'running').length === 3, 10000, '3 running cells');
      const cells = cellsOf(sse);
      expect([...cells.values()].map((c) => [c[0], c[1], c[3]])).toEqual(nodes.map((n) => [n.index, n.pid, 'node.running']));
      for (const n of nodes) expect(readStat(n.pid)?.state).not.toMatch(/[ZX]/);
      expect(sse.of('nodes').at(-1).counts).toEqual({ 'node.running': 3 });
      // The node went through the chart's states in order, as its log lines say.
      await sse.waitFor('log', (lines) => lines.some((l: { text: string }) => /generate 3 \(wait connected\): answered ok/.test(l.text)));
      const log = sse.of('log').flat().map((l: { text: string }) => l.text);
      expect(log).toContain('generate 3 (wait connected): accepted');
      expect(log.filter((t: string) => /^gen 1 node \d pid \d+ spawning$/.test(t))).toHaveLength(3);
      expect(log.filter((t: string) => /^gen 1 node \d pid \d+ running$/.test(t))).toHaveLength(3);

      // The stats event and the `stats` command are the same sample (retry if a new one came in between).
      await sse.waitFor('stats', (d) => d.nodes.length === 3);
      await eventually(
        async () => {
          const last = sse.of('stats').at(-1);
          const stats = await client.stats();
          return (
            last === sse.of('stats').at(-1) &&
            JSON.stringify(last.host.cpus) === JSON.stringify(stats.host.cpus) &&
            last.host.load === stats.host.load &&
            JSON.stringify(last.nodes) === JSON.stringify(stats.nodes.map((n) => [n.index, n.pid, n.cpu, n.rss]))
          );
        },
        10000,
        'a stats event equal to the stats reply',
      );

      const before = sse.of('manager').length;
      const reset = await client.reset();
      expect(reset.killed).toBe(3);
      // The reset's nodes stay, killed, until the next generation.
      await eventually(() => [...cellsOf(sse).values()].every((c) => c[2] === 'killed' && c[3] === 'node.killed'), 10000, 'killed cells after the reset');
      expect(sse.of('nodes').at(-1).counts).toEqual({ 'node.killed': 3 });
      await sse.waitFor('log', (lines) => lines.some((l: { text: string }) => l.text === 'reset: answered ok'));
      const states = sse.of('manager').slice(before).map((d) => d.active.at(-1));
      expect(states[0]).toMatch(/^manager\.resetting\./);
      expect(states.at(-1)).toBe('manager.idle');
      const killed = sse.of('log').flat().filter((l: { kind: string }) => l.kind === 'node killed');
      expect(killed.map((l: { text: string }) => Number(/node (\d+)/.exec(l.text)![1])).sort()).toEqual([0, 1, 2]);
    } finally {
      sse.close();
    }
  });
});

describe('--dashboard flag', () => {
  test('defaults to 127.0.0.1:7080 and takes [HOST:]PORT, loopback only', () => {
    const parse = (...argv: string[]) => parseManagerArgs(argv, {}).dashboard;
    expect(parse()).toBeNull();
    expect(parse('--dashboard')).toEqual({ host: '127.0.0.1', port: 7080 });
    expect(parse('--dashboard', '--port', '0')).toEqual({ host: '127.0.0.1', port: 7080 });
    expect(parse('--dashboard', '0')).toEqual({ host: '127.0.0.1', port: 0 });
    expect(parse('--dashboard=127.0.0.2:8080')).toEqual({ host: '127.0.0.2', port: 8080 });
    expect(parse('--dashboard', '[::1]:0')).toEqual({ host: '::1', port: 0 });
    expect(parse('--dashboard', 'localhost:1')).toEqual({ host: 'localhost', port: 1 });
    expect(() => parse('--dashboard', 'x')).toThrow(ConfigError);
    expect(() => parse('--dashboard', '70000')).toThrow(/from 0 to 65535/);
    expect(() => parse('--dashboard', '10.0.0.1:7080')).toThrow(/refusing to serve the dashboard on 10.0.0.1/);
  });

  test('a non-loopback address is refused with exit status 2 and how to tunnel instead', async () => {
    const proc = spawn(process.execPath, [CLI, 'manager', '--port', '0', '--log-dir', tmpDir(), '--dashboard', '0.0.0.0:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    proc.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise((resolve) => proc.on('exit', resolve));
    expect(code).toBe(2);
    expect(stderr).toContain('refusing to serve the dashboard on 0.0.0.0: it has no authentication');
    expect(stderr).toContain('serve it on --dashboard 7080 and tunnel to it: ssh -N -L 7080:127.0.0.1:7080');
  });

  test('a dashboard port in use stops the manager before it listens', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const proc = spawn(process.execPath, [CLI, 'manager', '--port', '0', '--log-dir', tmpDir(), '--dashboard', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      proc.stdout.on('data', (d) => (stdout += d));
      proc.stderr.on('data', (d) => (stderr += d));
      const code = await new Promise((resolve) => proc.on('exit', resolve));
      expect(code).toBe(1);
      expect(stdout).not.toContain('listening');
      expect(stderr).toContain(`cannot serve the dashboard on 127.0.0.1:${port}: EADDRINUSE`);
    } finally {
      blocker.close();
    }
  });
});

describe('herd manager --inspect without internet', () => {
  test('keeps serving generate, status and reset, and logs one warning', async () => {
    const m = await startManager(['--inspect']);
    try {
      expect(m.stderr()).toMatch(/inspect: the manager's statechart will be live at https:\/\/stately\.ai\/registry\/inspect\/[0-9a-f-]{36} once connected/);
      const c = await HerdClient.connect(m.address);
      try {
        const g = await c.generate(2, { wait: 'connected' });
        expect(g.nodes).toHaveLength(2);
        expect((await c.status()).counts.running).toBe(2);
        expect((await c.reset()).killed).toBe(2);
      } finally {
        await c.close();
      }
      const warnings = () => m.stderr().match(/warn {2}inspect: cannot reach Stately Sky/g) ?? [];
      await eventually(() => warnings().length > 0, 15000, 'the inspect warning');
      // The socket retries 1-5 s later: still one warning, and the manager still answers.
      await new Promise((r) => setTimeout(r, 5500));
      expect(warnings()).toHaveLength(1);
      expect(m.stderr()).not.toMatch(/internal error|unhandled/i);
      const c2 = await HerdClient.connect(m.address);
      expect((await c2.ping()).pong).toBe(true);
      await c2.close();
    } finally {
      expect(await m.stop()).toBe(0);
    }
  });
});
