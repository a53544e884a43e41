// `herd chart`: prints the statecharts, read from the machine definitions, as
// Mermaid, Graphviz dot or SVG (for docs; the dashboard draws the same model).

import { parseArgs } from 'node:util';
import { managerMachine } from '../machines/manager';
import { nodeMachine } from '../machines/node';
import { chartModel, toDot, toMermaid } from './chart';
import { chartSvg } from './chart-svg';

export const CHART_USAGE = 'herd chart [--format mermaid|dot|svg] [--machine manager|node]';

const MACHINES = { manager: managerMachine, node: nodeMachine };
const FORMATS = { mermaid: toMermaid, dot: toDot, svg: chartSvg };

/** Prints the charts on stdout; returns the exit status (2 for usage errors, printed on stderr). */
export function runChart(argv: string[]): number {
  const usage = (message: string) => {
    process.stderr.write(`herd chart: ${message}\n\nusage: ${CHART_USAGE}\n`);
    return 2;
  };
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { format: { type: 'string' }, machine: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true }));
  } catch (err) {
    return usage((err as Error).message);
  }
  if (values.help) {
    process.stdout.write(`usage: ${CHART_USAGE}\n\nThe manager and node statecharts, drawn from their XState definitions.\n--format: mermaid (default, stateDiagram-v2), dot (Graphviz), svg (as on the dashboard; needs --machine).\n--machine: one of them (default: both, one after the other).\n`);
    return 0;
  }
  const format = values.format ?? 'mermaid';
  if (!(format in FORMATS)) return usage(`--format must be one of ${Object.keys(FORMATS).join(', ')}, got "${format}"`);
  if (values.machine !== undefined && !(values.machine in MACHINES)) return usage(`--machine must be one of ${Object.keys(MACHINES).join(', ')}, got "${values.machine}"`);
  const names = values.machine !== undefined ? [values.machine as keyof typeof MACHINES] : (Object.keys(MACHINES) as (keyof typeof MACHINES)[]);
  if (format === 'svg' && names.length > 1) return usage('an SVG file holds one chart: add --machine manager or --machine node');
  const render = FORMATS[format as keyof typeof FORMATS];
  process.stdout.write(names.map((name) => render(chartModel(MACHINES[name]))).join('\n'));
  return 0;
}
