// Deploy: the systemd unit (systemd-analyze verify, and its ExecStart run for real),
// `herd up` / `herd down` against real managers started through a stand-in for ssh
// (test/fixtures/fake-ssh.sh runs the remote command here with sh -c), and the
// Kubernetes manifest's key fields.

import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import yaml from 'js-yaml';
import { HerdClient } from '../src/client';
import { MANAGER_NODE_FLAGS } from '../src/config';
import { isAlive, readStat } from '../src/proc';
import { ALIVE } from '../src/up';
import { CLI, errorOf, FIXTURES, freePort, herd, ROOT, tmpDir } from './helpers';

const UNIT = path.join(ROOT, 'deploy/herd-manager.service');
const FAKE_SSH = path.join(FIXTURES, 'fake-ssh.sh');
const REQUIRE_SYSTEMD = process.env.HERD_REQUIRE_SYSTEMD === '1';

/** `Key=value` lines of a unit file (comments dropped), in order. */
function unitEntries(text: string): [string, string][] {
  return text
    .split('\n')
    .filter((l) => /^[A-Za-z]+=/.test(l))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]);
}

const unit = unitEntries(readFileSync(UNIT, 'utf8'));
const setting = (key: string) => unit.filter(([k]) => k === key).map(([, v]) => v);
const unitEnv = Object.fromEntries(setting('Environment').map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));

describe('systemd unit', () => {
  const analyze = spawnSync('systemd-analyze', ['--version']);
  const haveAnalyze = !analyze.error;

  (haveAnalyze || REQUIRE_SYSTEMD ? test : test.skip)(
    haveAnalyze ? 'systemd-analyze verify finds nothing to say about it' : 'SKIPPED: systemd-analyze is not installed (apt-get install systemd; HERD_REQUIRE_SYSTEMD=1 makes this fail)',
    () => {
      if (!haveAnalyze) throw new Error('HERD_REQUIRE_SYSTEMD=1 but systemd-analyze is not installed (apt-get install systemd)');
      // This checkout and this node stand in for /opt/herd and /usr/bin/node.
      const dir = tmpDir();
      const copy = path.join(dir, 'herd-manager.service');
      writeFileSync(copy, readFileSync(UNIT, 'utf8').replaceAll('/opt/herd', ROOT).replaceAll('/usr/bin/node', process.execPath));
      const r = spawnSync('systemd-analyze', ['verify', copy], { encoding: 'utf8', cwd: dir });
      // verify exits 0 even for unknown keys or bad values: its output is the verdict.
      expect({ status: r.status, output: `${r.stdout}${r.stderr}`.trim() }).toEqual({ status: 0, output: '' });
    },
  );

  test('settings that fit herd: SIGTERM to the manager only, time for its grace, a delegated cgroup', () => {
    expect(setting('KillMode')).toEqual(['mixed']);
    expect(setting('Delegate')).toEqual(['yes']);
    expect(setting('Restart')).toEqual(['on-failure']);
    expect(setting('RuntimeDirectory')).toEqual(['herd']);
    expect(setting('RuntimeDirectoryMode')).toEqual(['0700']);
    expect(setting('TasksMax')).toEqual(['infinity']);
    const stopSec = Number(/^(\d+)s$/.exec(setting('TimeoutStopSec')[0])![1]);
    expect(stopSec * 1000).toBeGreaterThanOrEqual(Number(unitEnv.HERD_KILL_GRACE_MS) + 10_000);
    // The token as a credential file, never on the command line.
    expect(setting('LoadCredential')).toEqual(['token:/etc/herd/token']);
    expect(unitEnv.HERD_TOKEN_FILE).toBe('%d/token');
    expect(setting('ExecStart')[0]).not.toMatch(/token/i);
  });

  test("its ExecStart, expanded as systemd would, starts a manager that SIGTERM stops with status 0", async () => {
    const dir = tmpDir();
    const tokenFile = path.join(dir, 'token');
    writeFileSync(tokenFile, 'unit-test-token\n', { mode: 0o600 });
    const vars: Record<string, string> = { ...unitEnv, HERD_PORT: '0', HERD_TOKEN_FILE: tokenFile, HERD_STATE_DIR: path.join(dir, 'state') };
    const argv = setting('ExecStart')[0]
      .replaceAll('/opt/herd', ROOT)
      .split(/\s+/)
      .flatMap((w) => (/^\$[A-Z_]+$/.test(w) ? (vars[w.slice(1)] ?? '').split(/\s+/).filter(Boolean) : [w.replace(/\$\{([A-Z_]+)\}/g, (_, v) => vars[v])]));
    expect(argv[0]).toBe('/usr/bin/node');
    // The manager's node flags, as bin/herd passes them.
    expect(argv.slice(1, 1 + MANAGER_NODE_FLAGS.length)).toEqual(MANAGER_NODE_FLAGS);
    const proc = spawn(process.execPath, argv.slice(1), { cwd: dir, env: { ...process.env, ...vars }, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
    let stdout = '';
    const address = await new Promise<string>((resolve, reject) => {
      proc.stdout!.on('data', (d) => {
        stdout += d;
        const m = /^listening (\S+)$/m.exec(stdout);
        if (m) resolve(m[1]);
      });
      void exited.then((code) => reject(new Error(`manager exited with ${code}`)));
    });
    const c = await HerdClient.connect(address, { token: 'unit-test-token' });
    expect(c.manager!.pid).toBe(proc.pid);
    await c.close();
    proc.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});

/** Pids of live processes whose working directory is `dir`: managers started there and their nodes. */
function processesIn(dir: string): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number)
    .filter((pid) => {
      try {
        return readlinkSync(`/proc/${pid}/cwd`) === dir && isAlive(pid);
      } catch {
        return false;
      }
    });
}

test("the scripts' liveness check: a pid counts as the manager only with the manager's start time", () => {
  const sh = (script: string) => spawnSync('sh', ['-c', `${ALIVE}\n${script}`], { encoding: 'utf8' });
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  try {
    const start = sh(`started ${child.pid}`).stdout.trim();
    expect(start).toBe(String(readStat(child.pid!)!.startTicks));
    expect(sh(`alive ${child.pid} ${start}`).status).toBe(0);
    // The same pid with another start time: a process that reused the pid of one that exited.
    expect(sh(`alive ${child.pid} ${Number(start) + 1}`).status).toBe(1);
    expect(sh(`alive 999999999 ${start}`).status).toBe(1);
  } finally {
    child.kill('SIGKILL');
  }
});

describe('herd up / herd down over (fake) ssh', () => {
  const dir = tmpDir();
  const hostsFile = path.join(dir, 'hosts');
  const tokenFile = path.join(dir, 'token');
  const sshLog = path.join(dir, 'ssh.log');
  const TOKEN = 'b7d1e0c4f00dfeed5eed0fc0ffee1234';
  // 127.0.0.3 plays a host ssh cannot reach.
  const env = { FAKE_SSH_LOG: sshLog, FAKE_SSH_UNREACHABLE: '127.0.0.3' };
  const common = ['--hosts', hostsFile, '--token-file', tokenFile, '--ssh', FAKE_SSH, '--dir', dir, '--herd', `${process.execPath} ${CLI}`, '--connect-timeout', '2000'];
  let addresses: string[] = [];

  beforeAll(async () => {
    addresses = [`127.0.0.1:${await freePort('127.0.0.1')}`, `127.0.0.2:${await freePort('127.0.0.2')}`, `127.0.0.3:${await freePort('127.0.0.3')}`];
    writeFileSync(hostsFile, `# two hosts that answer, one that ssh cannot reach\n${addresses.join('\n')}\n`);
    writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  });

  afterAll(() => {
    // Whatever a failed test left behind.
    for (const pid of processesIn(dir)) process.kill(pid, 'SIGKILL');
  });

  test('up starts a manager per host, each answers ping with the token only; the unreachable host is reported, not waited for', async () => {
    const r = await herd(['up', ...common], env);
    expect(r.code).toBe(1);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(new RegExp(`^${addresses[0]}\\s+up  pid \\d+  \\(\\d+\\.\\ds\\)$`));
    expect(lines[1]).toMatch(new RegExp(`^${addresses[1]}\\s+up  pid \\d+`));
    expect(lines[2]).toMatch(new RegExp(`^${addresses[2]}\\s+error UNREACHABLE: ssh 127.0.0.3: ssh: connect to host 127.0.0.3 port 22: No route to host`));
    expect(lines[3]).toBe('3 hosts: 2 ok, 1 unreachable');

    for (const address of addresses.slice(0, 2)) {
      const pid = Number(new RegExp(`^${address}\\s+up  pid (\\d+)`, 'm').exec(r.stdout)![1]);
      const c = await HerdClient.connect(address, { token: TOKEN });
      expect(c.manager!.pid).toBe(pid);
      expect((await c.ping()).pong).toBe(true);
      await c.close();
      // The manager runs in its own session, in DIR, and its command line has no token.
      expect(readlinkSync(`/proc/${pid}/cwd`)).toBe(dir);
      expect(readFileSync(`/proc/${pid}/cmdline`, 'latin1')).not.toContain(TOKEN);
      const bare = await HerdClient.connect(address);
      expect((await errorOf(bare.status())).code).toBe('UNAUTHENTICATED');
      await bare.close();
    }
    // The token crossed over ssh's stdin into a file only its owner can read.
    expect(readFileSync(path.join(dir, '.herd/token'), 'utf8').trim()).toBe(TOKEN);
    expect(statSync(path.join(dir, '.herd/token')).mode & 0o777).toBe(0o600);
    expect(readFileSync(sshLog, 'utf8')).not.toContain(TOKEN);
  });

  test('up again finds them running and starts nothing', async () => {
    const before = processesIn(dir).sort();
    const r = await herd(['up', ...common, '--json'], env);
    const json = JSON.parse(r.stdout);
    expect(json[addresses[0]].result).toBe('already up');
    expect(json[addresses[1]].result).toBe('already up');
    expect(json[addresses[2]].error.code).toBe('UNREACHABLE');
    expect(processesIn(dir).sort()).toEqual(before);
  });

  test('down stops every manager and its nodes (SIGTERM, ordered shutdown); a host with none is "not running"', async () => {
    const c = await HerdClient.connect(addresses[0], { token: TOKEN });
    await c.generate(3);
    await c.close();
    expect(processesIn(dir).length).toBeGreaterThanOrEqual(2 + 3);
    const r = await herd(['down', ...common], env);
    expect(r.stdout).toMatch(new RegExp(`^${addresses[0]}\\s+stopped  pid \\d+`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^${addresses[1]}\\s+stopped  pid \\d+`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^${addresses[2]}\\s+not running`, 'm'));
    expect(r.code).toBe(0);
    // down returns once each manager has exited; its watchdog follows within moments.
    const deadline = Date.now() + 5000;
    while (processesIn(dir).length > 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
    expect(processesIn(dir)).toEqual([]);
    // The managers logged their own clean shutdown.
    expect(readFileSync(path.join(dir, 'herd-logs/manager.log'), 'utf8')).toMatch(/bye/);
  });

  test('a manager that cannot start: START_FAILED with the end of its output, at once', async () => {
    const one = path.join(dir, 'one-host');
    writeFileSync(one, `${addresses[0]}\n`);
    const r = await herd(['up', ...common, '--hosts', one, '--manager-arg=--max-frame=lots'], env);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/error START_FAILED: the manager exited; the output in .*manager-\d+\.out:/);
    expect(r.stdout).toMatch(/herd manager: --max-frame must be an integer/);
    expect(processesIn(dir)).toEqual([]);
  });

  test('usage errors exit 2', async () => {
    const r = await herd(['up', '--ssh', ' ', '--hosts', hostsFile], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--ssh needs a command/);
  });
});

// The same through a real sshd on loopback, when one is installed (Debian: openssh-server).
const SSHD = '/usr/sbin/sshd';
const haveSshd = spawnSync(SSHD, ['-V']).error === undefined && spawnSync('ssh-keygen', ['-?']).error === undefined;
if (!haveSshd && process.env.HERD_REQUIRE_SSHD === '1') {
  test('herd up over a real sshd', () => {
    throw new Error(`HERD_REQUIRE_SSHD=1 but ${SSHD} or ssh-keygen is missing (apt-get install openssh-server)`);
  });
}
(haveSshd ? describe : describe.skip)(haveSshd ? 'herd up / herd down over a real sshd on 127.0.0.1' : `SKIPPED: no ${SSHD} (apt-get install openssh-server; HERD_REQUIRE_SSHD=1 makes this fail) for herd up over real ssh`, () => {
  const dir = tmpDir();
  let sshd: ReturnType<typeof spawn> | undefined;
  let args: string[] = [];
  const TOKEN = 'c0ffee5eed1dea5a1ad5eed0bad5eed5';

  beforeAll(async () => {
    const sshPort = await freePort('127.0.0.1');
    const managerPort = await freePort('127.0.0.1');
    for (const key of ['hostkey', 'userkey']) spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, key)]);
    writeFileSync(path.join(dir, 'authorized_keys'), readFileSync(path.join(dir, 'userkey.pub')), { mode: 0o600 });
    writeFileSync(
      path.join(dir, 'sshd_config'),
      [`Port ${sshPort}`, 'ListenAddress 127.0.0.1', `HostKey ${dir}/hostkey`, `AuthorizedKeysFile ${dir}/authorized_keys`,
        'PermitRootLogin prohibit-password', 'PasswordAuthentication no', 'UsePAM no', 'StrictModes no', 'PidFile none'].join('\n'),
    );
    spawnSync('mkdir', ['-p', '/run/sshd']);
    sshd = spawn(SSHD, ['-D', '-e', '-f', path.join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      let err = '';
      sshd!.stderr!.on('data', (d) => ((err += d), /Server listening/.test(err) && resolve()));
      sshd!.on('exit', (code) => reject(new Error(`sshd exited with ${code}: ${err}`)));
    });
    writeFileSync(path.join(dir, 'hosts'), `127.0.0.1:${managerPort}\n`);
    writeFileSync(path.join(dir, 'token'), `${TOKEN}\n`, { mode: 0o600 });
    const ssh = `ssh -p ${sshPort} -i ${dir}/userkey -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR`;
    args = ['--hosts', path.join(dir, 'hosts'), '--token-file', path.join(dir, 'token'), '--ssh', ssh, '--dir', dir, '--herd', `${process.execPath} ${CLI}`];
  });

  afterAll(() => {
    for (const pid of processesIn(dir)) process.kill(pid, 'SIGKILL');
    sshd?.kill('SIGKILL');
  });

  test('up starts a manager that outlives the ssh session and answers ping; down stops it', async () => {
    const up = await herd(['up', ...args, '--json'], {});
    const result = JSON.parse(up.stdout);
    const [address] = Object.keys(result);
    expect(result[address]).toMatchObject({ result: 'up' });
    expect(up.code).toBe(0);
    const c = await HerdClient.connect(address, { token: TOKEN });
    expect(c.manager!.pid).toBe(result[address].pid);
    await c.generate(2);
    await c.close();
    const down = await herd(['down', ...args, '--json'], {});
    expect(JSON.parse(down.stdout)[address]).toMatchObject({ result: 'stopped', pid: result[address].pid });
    const deadline = Date.now() + 5000;
    while (processesIn(dir).length > 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
    expect(processesIn(dir)).toEqual([]);
  });
});

describe('Kubernetes DaemonSet', () => {
  const docs = yaml.safeLoadAll(readFileSync(path.join(ROOT, 'deploy/k8s/herd-daemonset.yaml'), 'utf8')) as any[];
  const ds = docs.find((d) => d?.kind === 'DaemonSet');
  const pod = ds.spec.template.spec;
  const manager = pod.containers[0];

  test('parses, and its selector matches its pods', () => {
    expect(ds.apiVersion).toBe('apps/v1');
    expect(pod && manager).toBeTruthy();
    expect(ds.spec.template.metadata.labels).toMatchObject(ds.spec.selector.matchLabels);
  });

  test('host network, the token from a Secret file, SIGTERM to the manager with time for its grace', () => {
    expect(pod.hostNetwork).toBe(true);
    const grace = Number(manager.args.find((a: string) => a.startsWith('--kill-grace-ms=')).split('=')[1]);
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThanOrEqual(grace + 10_000);
    expect(manager.command).toEqual(['node', ...MANAGER_NODE_FLAGS, '/opt/herd/dist/src/cli.js', 'manager']);
    const tokenArg = manager.args.find((a: string) => a.startsWith('--token-file='));
    const mount = manager.volumeMounts.find((m: any) => tokenArg.slice('--token-file='.length).startsWith(`${m.mountPath}/`));
    const volume = pod.volumes.find((v: any) => v.name === mount.name);
    expect(volume.secret.secretName).toBe('herd-token');
    expect(volume.secret.defaultMode).toBe(0o400);
    expect(manager.livenessProbe.tcpSocket.port).toBe(7070);
    expect(manager.ports[0]).toMatchObject({ containerPort: 7070, hostPort: 7070 });
    expect(manager.securityContext.allowPrivilegeEscalation).toBe(false);
  });
});
