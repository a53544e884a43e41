// A fleet across real network namespaces: three "hosts" (namespaces with a veth
// pair each on a bridge in the root namespace, addresses in 10.213.X.0/24, a
// random X and name suffix so parallel runs don't clash), a real `herd manager`
// with a token in each, the controller (the real CLI) in the root namespace.
// One host's link goes down in the middle of a generate: the controller must
// report it timed out (and unreachable afterwards) while the other two finish,
// and nothing may leak. Needs root and `ip netns` (iproute2); skipped with a
// message otherwise, or failed with HERD_REQUIRE_NETNS=1 (CI sets it).

import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, constants, mkdirSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { readStat } from '../src/proc';
import { CLI, eventually, FIXTURES, herd as runHerd, RunningManager, startManager, tmpDir } from './helpers';

const REQUIRE = process.env.HERD_REQUIRE_NETNS === '1';
const SUFFIX = randomBytes(3).toString('hex');
const SUBNET = `10.213.${1 + (randomBytes(1)[0] % 254)}`;
const HOSTS = [1, 2, 3];
/** Weights in the hosts file: --total 300 gives 150, 75, 75. */
const WEIGHTS = [2, 1, 1];

const ip = (...args: string[]) => {
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: 10000 });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.error?.message ?? r.stderr.trim()}`);
};

/** Why the namespaces cannot be made here ('' when they can): probes by making (and removing) one. */
function netnsUnavailable(): string {
  if (process.getuid?.() !== 0) return 'not root (network namespaces need CAP_SYS_ADMIN)';
  const probe = `herd-probe-${SUFFIX}`;
  const r = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8', timeout: 10000 });
  if (r.status !== 0) return `\`ip netns add\` failed: ${r.error?.message ?? r.stderr.trim()} (install iproute2)`;
  spawnSync('ip', ['netns', 'del', probe]);
  return '';
}

const ns = (i: number) => `herd-${SUFFIX}-${i}`;
const rootVeth = (i: number) => `hv${SUFFIX}${i}`;
const nsVeth = (i: number) => `hp${SUFFIX}${i}`;
const bridge = `hb${SUFFIX}`;
const addr = (i: number) => `${SUBNET}.${i}`;


const herd = (args: string[]) => runHerd(args, { HERD_TOKEN_FILE: '', MANAGER_IPS: '' });

/** Live node processes, by the manager (parent) that started them; `gated`: still the script (not yet connected). */
function nodesByManager(script: string, gatesDir: string): Map<number, { pid: number; gated: boolean }[]> {
  const by = new Map<number, { pid: number; gated: boolean }[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${d}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    const s = readStat(Number(d));
    // `cat` exec'd by the node keeps its pid but not the script in its cmdline: also match on the environment.
    if (!s || s.state === 'Z' || s.state === 'X') continue;
    // The script runs as `/bin/bash SCRIPT ...`; once connected it is `cat` (the managers share its environment).
    const argv = cmdline.split('\0');
    const gated = argv[1] === script;
    if (!gated && !(argv[0] === 'cat' && environHas(Number(d), `HERD_TEST_GATES=${gatesDir}`))) continue;
    by.set(s.ppid, [...(by.get(s.ppid) ?? []), { pid: Number(d), gated }]);
  }
  return by;
}

function environHas(pid: number, entry: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(entry);
  } catch {
    return false;
  }
}

const reason = netnsUnavailable();

if (reason) {
  describe('fleet across network namespaces', () => {
    if (REQUIRE) test('ip netns is available (required by HERD_REQUIRE_NETNS=1)', () => { throw new Error(`HERD_REQUIRE_NETNS=1 but ${reason}`); });
    else test.skip(`SKIPPED: ${reason}; run as root with iproute2, or set HERD_REQUIRE_NETNS=1 to make this fail`, () => {});
  });
} else {
  describe('fleet across network namespaces', () => {
    const dir = tmpDir('herd-netns-');
    const gates = path.join(dir, 'gates');
    // A light node that connects (with the token) and can be held back: see the fixture.
    const script = path.join(FIXTURES, 'fleet-node.sh');
    const tokenFile = path.join(dir, 'token');
    const hostsFile = path.join(dir, 'hosts');
    const managers: RunningManager[] = [];
    const common = ['--hosts', hostsFile, '--token-file', tokenFile];
    let gate: number | null = null;

    const perManager = () => {
      const by = nodesByManager(script, gates);
      return managers.map((m) => by.get(m.proc.pid!)?.length ?? 0);
    };
    const allNodes = () => [...nodesByManager(script, gates).values()].flat().map((n) => n.pid);

    beforeAll(async () => {
      mkdirSync(gates);
      writeFileSync(tokenFile, `${randomBytes(12).toString('hex')}\n`, { mode: 0o600 });
      writeFileSync(hostsFile, HOSTS.map((i, k) => `${addr(i)}:7070 weight=${WEIGHTS[k]}   # namespace ${ns(i)}\n`).join(''));
      ip('link', 'add', bridge, 'type', 'bridge');
      ip('addr', 'add', `${addr(254)}/24`, 'dev', bridge);
      ip('link', 'set', bridge, 'up');
      for (const i of HOSTS) {
        ip('netns', 'add', ns(i));
        ip('link', 'add', rootVeth(i), 'type', 'veth', 'peer', 'name', nsVeth(i));
        ip('link', 'set', nsVeth(i), 'netns', ns(i));
        ip('link', 'set', rootVeth(i), 'master', bridge, 'up');
        ip('-n', ns(i), 'addr', 'add', `${addr(i)}/24`, 'dev', nsVeth(i));
        ip('-n', ns(i), 'link', 'set', nsVeth(i), 'up');
        ip('-n', ns(i), 'link', 'set', 'lo', 'up');
      }
      for (const i of HOSTS) {
        const state = path.join(dir, `state-${i}`);
        managers.push(await startManager(
          ['--host', addr(i), '--port', '7070', '--token-file', tokenFile, '--node-command', script, '--log-dir', path.join(dir, `log-${i}`), '--state-dir', state],
          { HERD_TEST_GATES: gates },
          ['ip', 'netns', 'exec', ns(i)],
        ));
      }
    }, 30000);

    afterAll(async () => {
      if (gate !== null) closeSync(gate);
      await Promise.all(managers.map((m) => m.stop()));
      // Whatever a failed test left behind, then the network.
      for (const pid of allNodes()) process.kill(pid, 'SIGKILL');
      for (const i of HOSTS) spawnSync('ip', ['netns', 'del', ns(i)]);
      spawnSync('ip', ['link', 'del', bridge]);
    }, 30000);

    test('generate --total 300 spread by weight across three namespaced managers: a row per host, totals', async () => {
      const r = await herd(['generate', '--total', '300', '--wait', 'connected', ...common]);
      expect(r.stderr).toMatch(/3 managers: spawned 300\/300 in .*, connected 300\/300 in/);
      expect(r.code).toBe(0);
      const lines = r.stdout.trimEnd().split('\n');
      expect(lines[0]).toMatch(/^HOST +STATUS +GENERATION +NODES +SPAWNED +CONNECTED/);
      HOSTS.forEach((i, k) => {
        const n = (300 * WEIGHTS[k]) / 4;
        expect(lines[k + 1]).toMatch(new RegExp(`^${addr(i)}:7070 +ok +\\d+ +${n} +${n} +${n}$`));
      });
      expect(lines[4]).toBe('3 hosts: 3 ok; nodes spawned 300/300, connected 300/300');
      expect(perManager()).toEqual([150, 75, 75]);
    }, 60000);

    test('a link goes down mid-generate: that host times out, then is unreachable; the others finish; nothing leaks', async () => {
      mkfifoSync(path.join(gates, addr(3)));
      const gen = herd(['generate', '--total', '300', '--wait', 'connected', '--command-timeout', '8000', ...common]);
      // Host 3's nodes are all started (held at the gate before connecting): take its link down, then let them connect.
      const gated = () => (nodesByManager(script, gates).get(managers[2].proc.pid!) ?? []).filter((n) => n.gated).length;
      await eventually(() => gated() === 75, 20000, 'host 3 starting its 75 nodes');
      ip('link', 'set', rootVeth(3), 'down');
      gate = openSync(path.join(gates, addr(3)), constants.O_RDWR | constants.O_NONBLOCK);
      const r = await gen;
      expect(r.code).toBe(1);
      const lines = r.stdout.trimEnd().split('\n');
      expect(lines[1]).toMatch(new RegExp(`^${addr(1)}:7070 +ok +\\d+ +150 +150 +150$`));
      expect(lines[2]).toMatch(new RegExp(`^${addr(2)}:7070 +ok +\\d+ +75 +75 +75$`));
      expect(lines[3]).toMatch(new RegExp(`^${addr(3)}:7070 +timed out +- +75 +\\d+ +0 +no answer within 8000 ms \\(--command-timeout\\)$`));
      expect(lines[4]).toMatch(/^3 hosts: 2 ok, 1 timed out; nodes spawned (2\d\d|300)\/300, connected 225\/300$/);

      // Behind the dead link the manager still did its job (its nodes connected locally); the others hold exactly theirs.
      await eventually(async () => (await herdStatusIn(3)).includes('running 75'), 10000, 'host 3 nodes connected');
      expect(perManager()).toEqual([150, 75, 75]);

      // A new command: the host cannot be reached at all, and does not hold up the others.
      const t0 = Date.now();
      const s = await herd(['status', '--connect-timeout', '1500', ...common]);
      expect(Date.now() - t0).toBeLessThan(10000);
      expect(s.code).toBe(1);
      expect(s.stdout).toMatch(new RegExp(`^${addr(3)}:7070 +error UNREACHABLE: no connection within 1500 ms$`, 'm'));
      expect(s.stdout).toMatch(/^3 hosts: 2 ok, 1 unreachable$/m);
      expect(s.stdout).toMatch(/^fleet: target 225 {2}spawning 0 {2}running 225 {2}killed 0$/m);

      // Link back: every host answers; a reset clears the whole fleet, down to the OS.
      ip('link', 'set', rootVeth(3), 'up');
      await eventually(async () => (await herd(['ping', '--connect-timeout', '1000', ...common])).code === 0, 15000, 'host 3 reachable again');
      const reset = await herd(['reset', ...common]);
      expect(reset.code).toBe(0);
      expect(reset.stdout).toMatch(new RegExp(`^${addr(1)}:7070 +killed 150\\b`, 'm'));
      expect(reset.stdout).toMatch(new RegExp(`^${addr(3)}:7070 +killed 75\\b`, 'm'));
      expect(reset.stdout).toMatch(/^3 hosts: 3 ok$/m);
      await eventually(() => allNodes().length === 0, 10000, 'no node process left on any host');
      const after = await herd(['status', ...common]);
      expect(after.stdout).toMatch(/^fleet: target 300 {2}spawning 0 {2}running 0 {2}killed 0$/m);
    }, 60000);

    /** `herd status` from inside host i's namespace (its link may be down). */
    async function herdStatusIn(i: number): Promise<string> {
      return new Promise((resolve) => {
        execFile('ip', ['netns', 'exec', ns(i), process.execPath, CLI, 'status', '--manager', `${addr(i)}:7070`, '--token-file', tokenFile], (_e, stdout) => resolve(stdout));
      });
    }
  });
}

function mkfifoSync(file: string): void {
  const r = spawnSync('mkfifo', [file]);
  if (r.status !== 0) throw new Error(`mkfifo ${file} failed`);
}
