// The wire codec: 4-byte big-endian length frames around one plain MessagePack value.
//
// msgpackr alone is too lenient for a network edge: it decodes its own extensions
// (records, Set, RegExp, ...) and even the reserved byte 0xc1 whatever the options.
// So every body is first walked byte by byte (`checkPlain`) and only plain
// MessagePack with string map keys is handed to msgpackr.

import { Packr, Unpackr } from 'msgpackr';

export const HEADER_BYTES = 4;
const MAX_DEPTH = 64;
const UINT32_LIMIT = 2 ** 32;

const packr = new Packr({
  useRecords: false,
  mapsAsObjects: true,
  structuredClone: false,
  moreTypes: false,
  variableMapSize: true,
  encodeUndefinedAsNil: true,
});

const unpackr = new Unpackr({
  useRecords: false,
  mapsAsObjects: true,
  structuredClone: false,
  moreTypes: false,
  // 'auto': uint64/int64 in the safe range decode as number, beyond it as bigint
  // (supported at runtime; msgpackr's typings lag behind).
  int64AsType: 'auto' as 'bigint',
});

/** Thrown by `decodeBody` for anything that is not one plain MessagePack value. */
export class BadMessage extends Error {}

/** Objects and arrays that wired() made: already converted, passed through as they are. */
const prewired = new WeakSet<object>();

/**
 * msgpackr writes integers outside the 32-bit range as float64 unless they are
 * bigint; a Rust peer expecting u64 (timestamps!) would reject that. Convert
 * them, and drop undefined members, on the way out. (msgpackr writes a bigint
 * below 2^63 as int64, 0xd3, and above as uint64, 0xcf: integers either way.)
 */
function wireValue(value: unknown, remember = false): unknown {
  if (typeof value === 'number') {
    // Beyond 2^53 a number is not an exact integer any more: leave it a float.
    return Number.isSafeInteger(value) && (value >= UINT32_LIMIT || value < -(UINT32_LIMIT / 2)) ? BigInt(value) : value;
  }
  if (value === null || typeof value !== 'object' || value instanceof Uint8Array || prewired.has(value)) return value;
  let out: unknown[] | Record<string, unknown>;
  if (Array.isArray(value)) {
    out = value.map((v) => wireValue(v, remember));
  } else {
    const obj: Record<string, unknown> = (out = {});
    for (const k of Object.keys(value)) {
      const v = (value as Record<string, unknown>)[k];
      if (v === undefined) continue;
      // `obj[k] = v` with k = "__proto__" would replace obj's prototype instead.
      if (k === '__proto__') Object.defineProperty(obj, k, { value: wireValue(v, remember), enumerable: true, writable: true, configurable: true });
      else obj[k] = wireValue(v, remember);
    }
  }
  if (remember) prewired.add(out);
  return out;
}

/**
 * `value` converted for the wire once, for a result sent many times unchanged
 * (`status` while nothing changes): encodeFrame does not convert it again, even
 * inside another message. Only for encodeFrame: it holds bigints where its type says number.
 */
export function wired<T>(value: T): T {
  return wireValue(value, true) as T;
}

/** Encodes one message as a complete frame (header + body). */
export function encodeFrame(message: unknown): Buffer {
  const body = packr.pack(wireValue(message));
  const frame = Buffer.allocUnsafe(HEADER_BYTES + body.length);
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, HEADER_BYTES);
  return frame;
}

/**
 * Returns why `buf` is not exactly one plain MessagePack value, or null if it is.
 * Iterative (no recursion to exhaust), and it rejects counts that the remaining
 * bytes cannot hold before anything is allocated.
 */
export function checkPlain(buf: Uint8Array): string | null {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let pos = 0;
  // Each entry: values still to read at this level; for maps, odd positions are keys.
  const remaining: number[] = [1];
  const isMap: boolean[] = [false];
  const need = (bytes: number) => pos + bytes <= buf.length;

  while (remaining.length > 0) {
    const level = remaining.length - 1;
    if (remaining[level] === 0) {
      remaining.pop();
      isMap.pop();
      continue;
    }
    const expectKey = isMap[level] && remaining[level] % 2 === 0;
    remaining[level]--;
    if (!need(1)) return 'truncated';
    const b = buf[pos++];
    if (expectKey && !((b >= 0xa0 && b <= 0xbf) || b === 0xd9 || b === 0xda || b === 0xdb)) {
      return `map key at byte ${pos - 1} is not a string`;
    }
    let skip = 0;
    let container: 'array' | 'map' | null = null;
    let count = 0;
    if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) skip = 0;
    else if (b >= 0x80 && b <= 0x8f) { container = 'map'; count = b & 0x0f; }
    else if (b >= 0x90 && b <= 0x9f) { container = 'array'; count = b & 0x0f; }
    else if (b >= 0xa0 && b <= 0xbf) skip = b & 0x1f;
    else {
      switch (b) {
        case 0xcc: case 0xd0: skip = 1; break;
        case 0xcd: case 0xd1: skip = 2; break;
        case 0xca: case 0xce: case 0xd2: skip = 4; break;
        case 0xcb: case 0xcf: case 0xd3: skip = 8; break;
        case 0xc4: case 0xd9: if (!need(1)) return 'truncated'; skip = view.getUint8(pos); pos += 1; break;
        case 0xc5: case 0xda: if (!need(2)) return 'truncated'; skip = view.getUint16(pos); pos += 2; break;
        case 0xc6: case 0xdb: if (!need(4)) return 'truncated'; skip = view.getUint32(pos); pos += 4; break;
        case 0xdc: if (!need(2)) return 'truncated'; container = 'array'; count = view.getUint16(pos); pos += 2; break;
        case 0xdd: if (!need(4)) return 'truncated'; container = 'array'; count = view.getUint32(pos); pos += 4; break;
        case 0xde: if (!need(2)) return 'truncated'; container = 'map'; count = view.getUint16(pos); pos += 2; break;
        case 0xdf: if (!need(4)) return 'truncated'; container = 'map'; count = view.getUint32(pos); pos += 4; break;
        case 0xc1: return 'reserved byte 0xc1';
        default: return `extension type 0x${b.toString(16)} is not plain MessagePack`;
      }
    }
    if (container) {
      const items = container === 'map' ? count * 2 : count;
      if (pos + items > buf.length) return 'truncated';
      if (remaining.length > MAX_DEPTH) return `nested deeper than ${MAX_DEPTH}`;
      remaining.push(items);
      isMap.push(container === 'map');
    } else {
      if (!need(skip)) return 'truncated';
      pos += skip;
    }
  }
  return pos === buf.length ? null : `${buf.length - pos} trailing bytes after the value`;
}

/** Decodes one frame body; throws BadMessage for anything but plain MessagePack. */
export function decodeBody(body: Uint8Array): unknown {
  const problem = checkPlain(body);
  if (problem) throw new BadMessage(`body is not plain MessagePack: ${problem}`);
  try {
    return unpackr.unpack(body);
  } catch (err) {
    throw new BadMessage(`body is not MessagePack: ${(err as Error).message}`);
  }
}

export type FrameEvent = { kind: 'frame'; body: Buffer } | { kind: 'bad-length'; length: number };

/**
 * Cuts a byte stream into frame bodies. A length of 0 or over `maxFrame` cannot
 * be resynchronised: it is reported once and the decoder stops yielding.
 * At most one frame (header + `maxFrame` bytes) is ever buffered beyond what
 * the caller has not taken yet.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private broken = false;

  /** May be changed between frames (the server raises it once a peer authenticates). */
  constructor(public maxFrame: number) {}

  /** Bytes received but not yet part of a complete frame. */
  get pending(): number {
    return this.buffered;
  }

  /** Appends `chunk` and returns every frame now complete. */
  push(chunk: Buffer): FrameEvent[] {
    this.append(chunk);
    const out: FrameEvent[] = [];
    for (let event = this.next(); event; event = this.next()) out.push(event);
    return out;
  }

  /** Appends `chunk` without cutting frames; take them with `next()`. */
  append(chunk: Buffer): void {
    if (this.broken) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /**
   * The next complete frame, or null until more bytes arrive. One at a time,
   * so that a caller can act on a frame (say, a hello) before the limit is
   * applied to the next one.
   */
  next(): FrameEvent | null {
    if (this.broken || this.buffered < HEADER_BYTES) return null;
    const length = this.peek(HEADER_BYTES).readUInt32BE(0);
    if (length === 0 || length > this.maxFrame) {
      this.broken = true;
      this.chunks = [];
      this.buffered = 0;
      return { kind: 'bad-length', length };
    }
    if (this.buffered < HEADER_BYTES + length) return null;
    const frame = this.take(HEADER_BYTES + length);
    return { kind: 'frame', body: frame.subarray(HEADER_BYTES) };
  }

  private peek(n: number): Buffer {
    if (this.chunks[0].length < n) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0];
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    const frame = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return frame;
  }
}
