// The soak (bench/soak.ts, `npm run soak`) scaled down: 50 nodes x 5 generate/reset cycles, then
// 20 idle nodes for 2 s, against a real manager. Asserts no leaked process and the manager's
// descriptors back to their starting count; nothing on time (2 shared cores).

import { formatReport, soak } from '../bench/soak';

jest.setTimeout(180_000);

test('50 nodes x 5 generate/reset cycles leak no process and no descriptor', async () => {
  const report = await soak({ nodes: 50, cycles: 5, idleNodes: 20, idleS: 2 });
  const text = formatReport(report);
  // Shown only when it fails, where it is the evidence.
  if (!report.ok) process.stderr.write(`${text}\n`);

  expect(report.failures).toEqual([]);
  expect(report.leaked).toBe(0);
  expect(report.cycles.map((c) => c.leaked)).toEqual([0, 0, 0, 0, 0]);
  expect(report.cycles.map((c) => c.killed)).toEqual([50, 50, 50, 50, 50]);
  // Every node and its grandchild were really running (containment is exercised, not vacuous).
  expect(report.cycles.filter((c) => c.wait === 'connected').map((c) => c.groupProcs)).toEqual([100, 100]);
  expect(report.idle.killed).toBe(20);
  expect(report.afterStop.exit.code).toBe(0);
  // The manager's descriptors come back to the count it had before the first generate.
  expect(report.fds.end).toBeLessThanOrEqual(report.fds.start + report.options.fdTolerance);
  expect(report.cycles.every((c) => c.fds <= report.fds.start + report.options.fdTolerance)).toBe(true);
});
