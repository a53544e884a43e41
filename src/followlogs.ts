// `herd logs`: a node's output, read from its manager page by page with the
// `logs` command (so the controller needs no ssh). It prints the last part; with
// --follow it then polls from the `next` offset until the node has exited and
// everything is read, or until it is stopped (Ctrl-C). Offsets survive the
// manager's rotations, so nothing is printed twice; what was rotated away
// before it could be read, or a file truncated by someone else, gets a note.

import { setTimeout as sleep } from 'node:timers/promises';
import type { HerdClient } from './client';
import { LOGS_MAX_BYTES, LogsResult } from './protocol';

/** How often --follow asks for more. */
export const FOLLOW_POLL_MS = 250;

export interface FollowOptions {
  index: number;
  generation?: number;
  /** How much of the end to print first. */
  bytes: number;
  follow: boolean;
  /** Where each page goes; the promise resolves once it is written (backpressure). */
  write: (page: LogsResult, data: Buffer) => Promise<void>;
  /** A remark about the stream itself (a gap, a restart), not node output. */
  note: (text: string) => void;
  /** Ends the loop (Ctrl-C) between pages. */
  signal: AbortSignal;
}

export async function followLogs(client: HerdClient, opts: FollowOptions): Promise<void> {
  // Where the output ends now, and which generation: every later page stays with that one.
  const head = await client.logs(opts.index, { generation: opts.generation, maxBytes: 0 });
  // Starting mid-output, the first line may be cut: read from one byte earlier and drop
  // everything up to the first newline, so a whole line (after a newline) is kept.
  const from = head.size - opts.bytes;
  let partial = from > head.start;
  let offset = partial ? from - 1 : head.start;
  while (!opts.signal.aborted) {
    const page = await client.logs(opts.index, { generation: head.generation, offset, maxBytes: LOGS_MAX_BYTES });
    if (page.offset > offset) opts.note(`${page.offset - offset} bytes of output were rotated away before they could be read`);
    else if (page.offset < offset) opts.note(`the output file was truncated (not by herd); reading it again from its start`);
    let data = Buffer.from(page.data.buffer, page.data.byteOffset, page.data.byteLength);
    if (partial && data.length > 0) {
      const nl = data.indexOf(0x0a);
      if (nl >= 0 && nl < data.length - 1) data = data.subarray(nl + 1);
      partial = false;
    }
    await opts.write({ ...page, offset: page.next - data.length }, data);
    offset = page.next;
    if (!page.eof) continue;
    if (!opts.follow || !page.alive) return;
    await sleep(FOLLOW_POLL_MS, undefined, { signal: opts.signal }).catch(() => undefined);
  }
}
