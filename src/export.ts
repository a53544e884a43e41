// `herd export`: a generation's timeline from every manager, fetched page by page
// through the `timeline` command (no ssh), as CSV for a spreadsheet or pandas (one
// view: nodes, host or events), or as JSONL (every line). Each row names its manager
// in a `host` column. Rows are streamed as pages arrive, except host rows, which are
// gathered first: their per-core columns depend on the largest host.

import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { ConnectOptions, HerdClient, HerdError } from './client';
import { asHerdError } from './fleet';
import type { HostStats, TimelineLine } from './protocol';
import type { Target } from './targets';

export const EXPORT_VIEWS = ['nodes', 'host', 'events'] as const;
export type ExportView = (typeof EXPORT_VIEWS)[number];

export interface ExportOptions {
  view: ExportView;
  format: 'csv' | 'jsonl';
  /** Default: each manager's current generation. */
  generation?: number;
  out: Writable;
}

/** Per manager: the generation exported and how many rows it gave, or why it could not. */
export type ExportOutcome = { address: string; generation: number; rows: number; error?: undefined } | { address: string; error: HerdError };

const PAGE_BYTES = 1 << 20;

const COLUMNS: Record<Exclude<ExportView, 'host'>, string[]> = {
  nodes: ['time', 'mono', 'host', 'generation', 'index', 'pid', 'cpu', 'rss'],
  events: ['time', 'mono', 'host', 'generation', 'type', 'index', 'pid', 'from', 'to', 'latencyMs', 'exitCode', 'signal', 'outcome', 'failure'],
};
const HOST_COLUMNS = ['time', 'mono', 'host', 'generation', 'cpu', 'steal', 'iowait', 'load1', 'load5', 'load15', 'memUsed', 'memTotal'];

/** One CSV cell: numbers as they are, null/undefined empty, text quoted when it must be. */
function cell(v: unknown): string {
  if (v === null || v === undefined) return '';
  const s = typeof v === 'object' ? JSON.stringify(v) : String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}
const csvRow = (cells: unknown[]) => `${cells.map(cell).join(',')}\n`;

function hostCells(h: HostStats): unknown[] {
  return [h.load, h.steal, h.iowait, h.loadavg?.[0], h.loadavg?.[1], h.loadavg?.[2], h.memUsed, h.memTotal];
}

/** The rows one timeline line gives in a view (CSV cells after time, mono, host, generation). */
function rowsOf(line: TimelineLine, view: ExportView): unknown[][] {
  if (view === 'nodes') return line.type === 'sample' ? line.nodes.map((n) => [n.index, n.pid, n.cpu, n.rss]) : [];
  if (view === 'host') return line.type === 'sample' ? [[...hostCells(line.host), ...line.host.cpus]] : [];
  if (line.type === 'node') return [['node', line.index, line.pid, line.from, line.to, line.latencyMs, line.exitCode, line.signal, line.outcome, line.failure?.code]];
  if (line.type === 'ready') return [['ready', null, null, null, null, null, null, null, null, null]];
  return [];
}

/** Every line of one manager's timeline page by page; a line split across pages is joined. */
async function* timelineLines(client: HerdClient, generation: number | undefined): AsyncGenerator<{ generation: number; line: TimelineLine }> {
  let offset = 0;
  let carry = Buffer.alloc(0);
  for (;;) {
    const page = await client.timeline({ ...(generation !== undefined ? { generation } : {}), offset, maxBytes: PAGE_BYTES });
    // The first page fixes the generation (the current one, when none was named).
    generation = page.generation;
    const data = carry.length > 0 ? Buffer.concat([carry, page.data]) : Buffer.from(page.data);
    const end = data.lastIndexOf(0x0a) + 1;
    for (const text of data.subarray(0, end).toString('utf8').split('\n')) {
      if (text !== '') yield { generation, line: JSON.parse(text) as TimelineLine };
    }
    carry = data.subarray(end);
    if (page.next === offset && !page.eof) throw new HerdError('BAD_REPLY', `the manager's timeline page at offset ${offset} made no progress`);
    offset = page.next;
    if (page.eof) break;
  }
  // A last line still being written when the page was read is left out.
}

/** Writes `text`, waiting when the stream asks us to. */
async function write(out: Writable, text: string): Promise<void> {
  if (!out.write(text)) await once(out, 'drain');
}

/** Exports from each manager in turn (one failing does not stop the others). */
export async function exportTimeline(targets: Target[], conn: ConnectOptions, opts: ExportOptions): Promise<ExportOutcome[]> {
  const { view, format, out } = opts;
  const outcomes: ExportOutcome[] = [];
  const hostRows: unknown[][] = [];
  // The CSV header goes out with the first row (or at the end), so a failed export prints no half table.
  let headed = format !== 'csv' || view === 'host';
  const head = async () => {
    if (!headed) await write(out, csvRow(COLUMNS[view as Exclude<typeof view, 'host'>]));
    headed = true;
  };
  for (const { address } of targets) {
    let client: HerdClient | undefined;
    let rows = 0;
    let generation = opts.generation ?? -1;
    try {
      client = await HerdClient.connect(address, conn);
      for await (const item of timelineLines(client, opts.generation)) {
        generation = item.generation;
        const { line } = item;
        if (format === 'jsonl') {
          await write(out, `${JSON.stringify({ host: address, ...line })}\n`);
          rows++;
          continue;
        }
        for (const r of rowsOf(line, view)) {
          const row = [line.time, line.mono, address, line.generation, ...r];
          rows++;
          if (view === 'host') hostRows.push(row);
          else {
            await head();
            await write(out, csvRow(row));
          }
        }
      }
      outcomes.push({ address, generation, rows });
    } catch (err) {
      outcomes.push({ address, error: asHerdError(err) });
    } finally {
      await client?.close();
    }
  }
  const anyOk = outcomes.some((o) => !o.error);
  if (anyOk) await head();
  if (format === 'csv' && view === 'host' && anyOk) {
    const cores = Math.max(0, ...hostRows.map((r) => r.length - HOST_COLUMNS.length));
    await write(out, csvRow([...HOST_COLUMNS, ...Array.from({ length: cores }, (_, i) => `cpu${i}`)]));
    for (const r of hostRows) await write(out, csvRow(r));
  }
  return outcomes;
}
