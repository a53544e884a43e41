// The run journal (src/runstate.ts): what a dead manager's successor and its watchdog
// read to know which node processes may still be alive.

import { readFileSync } from 'node:fs';
import { RunJournal } from '../src/runstate';
import { tmpDir } from './helpers';

const header = { v: 1 as const, runId: 'r1', pid: process.pid, startTicks: 1, bootId: 'b', cgroup: null };
const entries = (file: string) => readFileSync(file, 'utf8').split('\n').filter(Boolean).slice(1);
const turn = () => new Promise((resolve) => setImmediate(resolve));

test('starts are written at once, removals once per event-loop turn, and a reused pid after its removal', async () => {
  const journal = RunJournal.create(tmpDir('herd-state-'), header);
  journal.add(100, 11);
  journal.add(200, 22);
  expect(entries(journal.file)).toEqual(['{"+":100,"s":11}', '{"+":200,"s":22}']);
  journal.remove(100);
  journal.remove(200);
  expect(entries(journal.file)).toHaveLength(2);
  await turn();
  expect(entries(journal.file).slice(2)).toEqual(['{"-":100}', '{"-":200}']);
  // Pid 100 reaped and given to a new node in the same turn: the removal must come first.
  journal.add(100, 33);
  journal.remove(100);
  journal.add(100, 44);
  expect(entries(journal.file).slice(4)).toEqual(['{"+":100,"s":33}', '{"-":100}', '{"+":100,"s":44}']);
  await turn();
  expect(entries(journal.file)).toHaveLength(7);
  journal.close();
});
