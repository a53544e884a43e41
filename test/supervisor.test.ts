// The supervisor with real processes: a fault inside the statechart is answered
// INTERNAL, no node is orphaned, and the manager keeps serving.

import { managerMachine } from '../machines/manager';
import { Containment } from '../src/containment';
import { Launcher } from '../src/launcher';
import { createSpawner } from '../src/spawner';
import { createLogger } from '../src/logger';
import { NodeOutput } from '../src/nodeoutput';
import { isAlive } from '../src/proc';
import { Supervisor } from '../src/supervisor';
import { eventually, groupMembers, tmpDir } from './helpers';

const opened: Containment[] = [];
afterEach(() => opened.splice(0).forEach((c) => c.close()));

function setup(machine = managerMachine) {
  const logger = createLogger({ console: false });
  const containment = new Containment({ stateDir: tmpDir(), logger, cgroup: false, watchdog: null });
  opened.push(containment);
  const launcher = new Launcher({
    // The two appended arguments become $1 and $2 of the script: ignored.
    command: '/bin/sh',
    args: ['-c', 'sleep 1000 & exec sleep 1000', 'node'],
    env: process.env,
    output: new NodeOutput({ logDir: tmpDir(), maxBytes: 0, logger }),
    killGraceMs: 1000,
    logger,
    containment,
    maxLive: 100,
    spawner: createSpawner(undefined).spawner,
  });
  return { launcher, supervisor: new Supervisor({ launcher, containment, logger, maxQueue: 10, machine }) };
}

const generate = (s: Supervisor, n: number) => s.request({ type: 'generate', n, wait: 'spawned', interface: '127.0.0.1:7071', machineIp: '127.0.0.1' });

test('a throwing action: INTERNAL reply, every node group killed, a fresh actor continues the generation count', async () => {
  const faulty = managerMachine.provide({
    actions: {
      killTarget: () => {
        throw new Error('boom');
      },
    },
  });
  const { supervisor, launcher } = setup(faulty);
  const first = await generate(supervisor, 2);
  if (!('result' in first)) throw new Error(`generate failed: ${JSON.stringify(first)}`);
  const pids = (first.result.nodes as { pid: number }[]).map((n) => n.pid);
  // Each node and its background sleep: the sleep may start a moment after the spawned reply.
  let members: number[] = [];
  await eventually(() => (members = pids.flatMap((pid) => groupMembers(pid))).length === 4, 5000, 'two processes in each node group');

  const reply = await supervisor.request({ type: 'kill', index: 0 });
  expect(reply).toMatchObject({ error: { code: 'INTERNAL', message: expect.stringContaining('boom') } });
  await eventually(() => members.every((pid) => !isAlive(pid)), 3000, 'all node groups killed');
  await eventually(() => launcher.livePids().length === 0, 3000, 'all node processes reaped');

  expect(supervisor.status()).toMatchObject({ state: 'idle', generation: 1, nodes: [] });
  const second = await generate(supervisor, 1);
  expect(second).toMatchObject({ result: { generation: 2 } });
  expect(await supervisor.shutdown()).toBe(1);
});

test('shutdown kills and reaps every node before it resolves', async () => {
  const { supervisor, launcher } = setup();
  const reply = await generate(supervisor, 3);
  if (!('result' in reply)) throw new Error('generate failed');
  const members = (reply.result.nodes as { pid: number }[]).flatMap((n) => groupMembers(n.pid));
  expect(await supervisor.shutdown()).toBe(3);
  // The nodes themselves are reaped by then; what they left in their groups got SIGKILL, which
  // takes effect a moment later.
  for (const n of reply.result.nodes as { pid: number }[]) expect(isAlive(n.pid)).toBe(false);
  await eventually(() => members.every((pid) => !isAlive(pid)), 3000, 'the rest of each group killed');
  expect(launcher.livePids()).toEqual([]);
});
