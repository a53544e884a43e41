// One page of a file, for the paged read-only commands (`timeline`; node output):
// a bounded byte range, read with one open-read-close, so nothing stays open
// between pages and a file that is moved or deleted meanwhile is simply re-resolved.

import { open } from 'node:fs/promises';
import { basename } from 'node:path';

/** Page size when the request names none: well inside a 1 MiB frame. */
export const DEFAULT_CHUNK_BYTES = 256 * 1024;
/** The largest page a request may ask for (replies are framed whole). */
export const MAX_CHUNK_BYTES = 4 * 1024 * 1024;

export interface FileChunk {
  /** The bytes read: binary (MessagePack bin) on the wire. */
  data: Buffer;
  /** Byte offset where `data` starts. */
  offset: number;
  /** Byte offset of the next page: `offset + data.length`. */
  next: number;
  /** Size of the file when it was read. */
  size: number;
  /** `next` is the end of the file as it was when read (a live file may grow later). */
  eof: boolean;
}

/** Why a page cannot be read: no such file, an offset past its end, or an OS error (`code` is its errno name). */
export class FileChunkError extends Error {
  constructor(
    readonly code: 'ENOENT' | 'RANGE' | string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Reads at most `maxBytes` (capped at MAX_CHUNK_BYTES) of `file` from `offset`.
 * With `wholeLines`, a page that stops short of the end of the file ends after
 * its last newline, if it has one, so that each page of a line-oriented file
 * parses on its own; a line longer than a page is returned in pieces.
 */
export async function readChunk(file: string, offset: number, maxBytes: number, opts: { wholeLines?: boolean } = {}): Promise<FileChunk> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new FileChunkError(e.code ?? 'EIO', e.code === 'ENOENT' ? `${file} does not exist` : `cannot open ${file}: ${e.message}`);
  }
  try {
    const { size } = await handle.stat();
    if (offset > size) throw new FileChunkError('RANGE', `offset ${offset} is past the end of ${basename(file)} (${size} bytes)`);
    const want = Math.min(Math.max(0, maxBytes), MAX_CHUNK_BYTES, size - offset);
    const buf = Buffer.allocUnsafe(want);
    let got = 0;
    while (got < want) {
      const { bytesRead } = await handle.read(buf, got, want - got, offset + got);
      if (bytesRead === 0) break; // truncated while we read
      got += bytesRead;
    }
    let data = buf.subarray(0, got);
    if (opts.wholeLines && offset + got < size) {
      const cut = data.lastIndexOf(0x0a);
      if (cut >= 0) data = data.subarray(0, cut + 1);
    }
    const next = offset + data.length;
    return { data, offset, next, size, eof: next >= size };
  } catch (err) {
    if (err instanceof FileChunkError) throw err;
    const e = err as NodeJS.ErrnoException;
    throw new FileChunkError(e.code ?? 'EIO', `cannot read ${file}: ${e.message}`);
  } finally {
    await handle.close();
  }
}
