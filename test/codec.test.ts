// The wire codec against PROTOCOL.md ("Transport and framing"): frames are a
// 4-byte big-endian length plus one plain MessagePack value that any
// MessagePack library (Rust rmp, Python msgpack) can read and write.

import { Packr, Unpackr } from 'msgpackr';
import { BadMessage, FrameDecoder, FrameEvent, HEADER_BYTES, checkPlain, decodeBody, encodeFrame, wired } from '../src/codec';
import { PYTHON, describeIfPython, runPython } from './python';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const cat = (...parts: (Buffer | number[] | string)[]): Buffer =>
  Buffer.concat(parts.map((p) => (typeof p === 'string' ? hex(p) : Buffer.from(p))));
/** msgpack fixstr for an ASCII string (< 32 bytes). */
const fixstr = (s: string): Buffer => cat([0xa0 | s.length], Buffer.from(s, 'ascii'));
const u64 = (v: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(v);
  return b;
};
const i64 = (v: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(v);
  return b;
};

/** The body of an encoded frame, after checking its header. */
function bodyOf(message: unknown): Buffer {
  const frame = encodeFrame(message);
  expect(frame.length).toBeGreaterThan(HEADER_BYTES);
  expect(frame.readUInt32BE(0)).toBe(frame.length - HEADER_BYTES);
  return frame.subarray(HEADER_BYTES);
}

const roundTrip = (message: unknown): unknown => decodeBody(bodyOf(message));

/** Asserts bytes at `offset` are a 9-byte MessagePack 64-bit integer (0xcf / 0xd3) holding `value`. */
function expectInt64At(body: Buffer, offset: number, value: number | bigint): void {
  const marker = body[offset];
  expect([0xcf, 0xd3]).toContain(marker);
  const held = marker === 0xcf ? body.readBigUInt64BE(offset + 1) : body.readBigInt64BE(offset + 1);
  expect(held).toBe(BigInt(value));
}

/** Asserts `body` is rejected by the strict plain-MessagePack check, before msgpackr ever sees it. */
function expectRejected(body: Uint8Array, reason?: RegExp): void {
  const problem = checkPlain(body);
  expect(problem).toEqual(expect.any(String));
  if (reason) expect(problem).toMatch(reason);
  const unpack = jest.spyOn(Unpackr.prototype, 'unpack');
  try {
    expect(() => decodeBody(body)).toThrow(BadMessage);
    expect(unpack).not.toHaveBeenCalled();
  } finally {
    unpack.mockRestore();
  }
}

/** Pushes `chunks` through one decoder and returns every event in order. */
function feed(decoder: FrameDecoder, chunks: Buffer[]): FrameEvent[] {
  const events: FrameEvent[] = [];
  for (const chunk of chunks) events.push(...decoder.push(chunk));
  return events;
}

const bodies = (events: FrameEvent[]): unknown[] =>
  events.map((e) => {
    if (e.kind !== 'frame') throw new Error(`unexpected ${e.kind} event (length ${e.length})`);
    return decodeBody(e.body);
  });

const bytewise = (buf: Buffer): Buffer[] => Array.from(buf, (b) => Buffer.from([b]));

// A request and a reply shaped like the real ones, with every plain type in them.
const STARTED_AT = Date.now();
const REQUEST = { id: 41, cmd: 'generate', n: 3, wait: 'connected', timeoutMs: 20000, interface: '10.0.0.7:7071' };
const REPLY = {
  id: 4294967295,
  ok: true,
  state: 'running',
  generation: 2,
  target: 3,
  counts: { spawning: 0, running: 2, killed: 1 },
  nodes: [
    { index: 0, pid: 4242, state: 'running', nodeId: { name: 'nœud-0 🐑', tags: ['a', 'ß', '日本'] }, startedAt: STARTED_AT, connectedAt: STARTED_AT + 17 },
    { index: 1, pid: 4243, state: 'killed', startedAt: STARTED_AT, exitCode: null, signal: 'SIGKILL' },
    { index: 2, pid: 4244, state: 'killed', startedAt: STARTED_AT, exitCode: -1, signal: null, nodeId: [true, false, null, -0.5, 1e-300, -123456] },
  ],
  blob: Buffer.from([0, 1, 2, 0xc1, 0xff]),
  empty: { list: [], map: {}, str: '' },
};

describe('encodeFrame / decodeBody round trips', () => {
  test('frame header is the 4-byte big-endian body length', () => {
    const frame = encodeFrame({ id: 1, cmd: 'ping' });
    expect(frame.readUInt32BE(0)).toBe(frame.length - 4);
    expect(frame.subarray(4)).toEqual(cat('82', fixstr('id'), '01', fixstr('cmd'), fixstr('ping')));
  });

  test('request-shaped object', () => {
    expect(roundTrip(REQUEST)).toEqual(REQUEST);
  });

  test('reply-shaped object with nested maps, arrays, unicode, bin, null, booleans, negatives, floats', () => {
    const back = roundTrip(REPLY) as typeof REPLY;
    const { blob, ...rest } = back;
    const { blob: sentBlob, ...sentRest } = REPLY;
    expect(rest).toEqual(sentRest);
    expect(blob).toBeInstanceOf(Uint8Array);
    expect(Buffer.from(blob).equals(sentBlob)).toBe(true);
  });

  test('error reply with details and a null id', () => {
    const reply = { id: null, ok: false, error: { code: 'SPAWN_FAILED', message: 'spawn /nope ENOENT', details: [{ index: 0, code: 'ENOENT' }] } };
    expect(roundTrip(reply)).toEqual(reply);
  });

  test.each([
    ['empty string', ''],
    ['fixstr unicode', 'héllo wörld ✓'],
    ['emoji (4-byte UTF-8)', '🐑🐄🐐'],
    ['str8', 'x'.repeat(200)],
    ['str16', 'ü'.repeat(1000)],
    ['str32', 'y'.repeat(70000)],
  ])('strings: %s', (_name, s) => {
    expect(roundTrip({ s })).toEqual({ s });
  });

  test.each([
    [0], [1], [127], [128], [255], [256], [65535], [65536], [2 ** 32 - 1],
    [-1], [-32], [-33], [-128], [-129], [-32768], [-32769], [-(2 ** 31)], [-(2 ** 31) - 1],
    [2 ** 32], [Number.MAX_SAFE_INTEGER], [-Number.MAX_SAFE_INTEGER],
    [0.5], [-1.25], [1e-300], [1.5e15 + 0.5], [-Number.MIN_VALUE], [Math.PI],
  ])('number %p', (n) => {
    expect(roundTrip({ n })).toEqual({ n });
    expect(roundTrip([n])).toEqual([n]);
  });

  test('bin of every width decodes to the same bytes', () => {
    for (const size of [0, 1, 255, 256, 65535, 65536]) {
      const bin = Buffer.alloc(size, 0xc1);
      const back = roundTrip({ bin }) as { bin: Uint8Array };
      expect(back.bin).toBeInstanceOf(Uint8Array);
      expect(Buffer.from(back.bin).equals(bin)).toBe(true);
    }
  });

  test('arrays and maps of every width', () => {
    for (const size of [0, 15, 16, 65535, 65536]) {
      const list = Array.from({ length: size }, (_, i) => i % 300);
      expect(roundTrip({ list })).toEqual({ list });
    }
    for (const size of [15, 16, 70000]) {
      const map: Record<string, number> = {};
      for (let i = 0; i < size; i++) map[`k${i}`] = i;
      expect(roundTrip(map)).toEqual(map);
    }
  });

  test('booleans and null at top level', () => {
    expect(roundTrip(true)).toBe(true);
    expect(roundTrip(false)).toBe(false);
    expect(roundTrip(null)).toBeNull();
  });
});

describe('integers above 32 bits go out as MessagePack integers, never float64', () => {
  test('Date.now() as a whole body', () => {
    const now = Date.now();
    const body = bodyOf(now);
    expect(body.length).toBe(9);
    expect(body[0]).not.toBe(0xcb);
    expectInt64At(body, 0, now);
    expect(decodeBody(body)).toBe(now);
  });

  test('timestamps nested in maps and arrays', () => {
    const now = Date.now();
    // { t: [now] }  ->  81 a1 74 91 <int64>
    const body = bodyOf({ t: [now] });
    expect(body.subarray(0, 4)).toEqual(cat('81', fixstr('t'), '91'));
    expect(body.length).toBe(4 + 9);
    expectInt64At(body, 4, now);
    // a status-shaped reply: every time field is an integer
    const status = bodyOf({ nodes: [{ startedAt: now }] });
    expect(status.subarray(0, 19)).toEqual(cat('81', fixstr('nodes'), '91', '81', fixstr('startedAt')));
    expectInt64At(status, 19, now);
    expect(status.length).toBe(19 + 9);
  });

  test.each([
    [2 ** 32],
    [2 ** 40 + 5],
    [Number.MAX_SAFE_INTEGER],
    [-(2 ** 31) - 1],
    [-(2 ** 40)],
    [-Number.MAX_SAFE_INTEGER],
  ])('%p', (n) => {
    const body = bodyOf(n);
    expect(body.length).toBe(9);
    expectInt64At(body, 0, n);
    expect(decodeBody(body)).toBe(n);
  });

  test('32-bit values keep their compact encodings and fractions stay float64', () => {
    expect(bodyOf(2 ** 32 - 1)).toEqual(hex('ce ffffffff'));
    expect(bodyOf(-(2 ** 31))).toEqual(hex('d2 80000000'));
    expect(bodyOf(1.5)).toEqual(hex('cb 3ff8000000000000'));
  });

  test('bigint values go out as 64-bit integers', () => {
    expect(bodyOf(2n ** 64n - 1n)).toEqual(hex('cf ffffffffffffffff'));
    expect(bodyOf(-(2n ** 63n))).toEqual(hex('d3 8000000000000000'));
  });

  test('undefined members are omitted', () => {
    const body = bodyOf({ id: 1, a: undefined, b: { c: undefined, d: 1 } });
    expect(body).toEqual(cat('82', fixstr('id'), '01', fixstr('b'), '81', fixstr('d'), '01'));
    const back = decodeBody(body) as Record<string, unknown>;
    expect(Object.keys(back)).toEqual(['id', 'b']);
    expect(back).toEqual({ id: 1, b: { d: 1 } });
  });

  test('undefined inside an array keeps its slot as nil', () => {
    expect(bodyOf([1, undefined, 2])).toEqual(hex('93 01 c0 02'));
  });

  test('a value converted once with wired() encodes to the same bytes, alone or spread into a reply', () => {
    const now = Date.now();
    const status = { state: 'idle', counts: { running: 2 }, nodes: [{ index: 0, pid: 7, startedAt: now, tail: undefined }, { index: 1, pid: 8, startedAt: now + 1 }], failed: [] };
    const once = wired(status);
    expect(bodyOf(once)).toEqual(bodyOf(status));
    for (let id = 1; id <= 2; id++) expect(bodyOf({ id, ok: true, ...once })).toEqual(bodyOf({ id, ok: true, ...status }));
    expect(decodeBody(bodyOf({ id: 1, ok: true, ...once }))).toEqual({ id: 1, ok: true, state: 'idle', counts: { running: 2 }, nodes: [{ index: 0, pid: 7, startedAt: now }, { index: 1, pid: 8, startedAt: now + 1 }], failed: [] });
    // The original is left as it was.
    expect(status.nodes[0].startedAt).toBe(now);
  });

  // A float64 a peer sent may decode to an integral number beyond 2^53: it is echoed as float64.
  test('integral numbers beyond 2^53 (1e20, 2^64, Number.MAX_VALUE) encode as float64', () => {
    expect(bodyOf(1e20)).toEqual(hex('cb 4415af1d78b58c40'));
    expect(bodyOf(Number.MAX_VALUE)).toEqual(hex('cb 7fefffffffffffff'));
    expect(decodeBody(bodyOf({ nodeId: 2 ** 64 }))).toEqual({ nodeId: 2 ** 64 });
  });
});

describe('FrameDecoder', () => {
  const messages = [REQUEST, { id: 2, cmd: 'ping' }, REPLY, { id: 3, cmd: 'status' }];
  const stream = Buffer.concat(messages.map((m) => encodeFrame(m)));

  test('one frame split byte by byte yields exactly one frame, at its last byte', () => {
    const frame = encodeFrame(REQUEST);
    const decoder = new FrameDecoder(1024);
    const chunks = bytewise(frame);
    for (let i = 0; i < chunks.length - 1; i++) {
      expect(decoder.push(chunks[i])).toEqual([]);
      expect(decoder.pending).toBe(i + 1);
    }
    const last = decoder.push(chunks[chunks.length - 1]);
    expect(last).toHaveLength(1);
    expect(bodies(last)).toEqual([REQUEST]);
    expect(decoder.pending).toBe(0);
  });

  test('several frames fed byte by byte', () => {
    const events = feed(new FrameDecoder(1 << 20), bytewise(stream));
    expect(bodies(events)).toEqual(bodies(feed(new FrameDecoder(1 << 20), [stream])));
    expect(events.map((e) => e.kind)).toEqual(['frame', 'frame', 'frame', 'frame']);
    const back = bodies(events) as Record<string, unknown>[];
    expect(back[0]).toEqual(REQUEST);
    expect(back[1]).toEqual({ id: 2, cmd: 'ping' });
    expect(back[3]).toEqual({ id: 3, cmd: 'status' });
  });

  test('several frames in one chunk', () => {
    const events = new FrameDecoder(1 << 20).push(stream);
    expect(events).toHaveLength(4);
    const back = bodies(events) as Record<string, unknown>[];
    expect(back[0]).toEqual(REQUEST);
    expect(back[1]).toEqual({ id: 2, cmd: 'ping' });
    expect((back[2] as { nodes: unknown[] }).nodes).toHaveLength(3);
    expect(back[3]).toEqual({ id: 3, cmd: 'status' });
  });

  test('every way of cutting the stream in two (header split included) gives the same frames', () => {
    const expected = bodies(new FrameDecoder(1 << 20).push(stream));
    for (let cut = 1; cut < stream.length; cut++) {
      const events = feed(new FrameDecoder(1 << 20), [stream.subarray(0, cut), stream.subarray(cut)]);
      expect(events).toHaveLength(4);
      expect(bodies(events)).toEqual(expected);
    }
  });

  test('a 4-byte header split 1+3, 2+2, 3+1 and 1+1+1+1', () => {
    const frame = encodeFrame({ id: 9, cmd: 'ping' });
    for (const sizes of [[1, 3], [2, 2], [3, 1], [1, 1, 1, 1]]) {
      const decoder = new FrameDecoder(1024);
      let at = 0;
      for (const size of sizes) {
        expect(decoder.push(frame.subarray(at, at + size))).toEqual([]);
        at += size;
      }
      expect(decoder.pending).toBe(4);
      expect(bodies(decoder.push(frame.subarray(at)))).toEqual([{ id: 9, cmd: 'ping' }]);
    }
  });

  test('a chunk ending inside the next header keeps that partial header', () => {
    const a = encodeFrame({ id: 1, cmd: 'ping' });
    const b = encodeFrame({ id: 2, cmd: 'ping' });
    const decoder = new FrameDecoder(1024);
    expect(bodies(decoder.push(Buffer.concat([a, b.subarray(0, 2)])))).toEqual([{ id: 1, cmd: 'ping' }]);
    expect(decoder.pending).toBe(2);
    expect(bodies(decoder.push(b.subarray(2)))).toEqual([{ id: 2, cmd: 'ping' }]);
  });

  test('a frame of exactly maxFrame bytes is accepted', () => {
    const body = bodyOf({ s: 'z'.repeat(100) });
    const frame = encodeFrame({ s: 'z'.repeat(100) });
    const events = new FrameDecoder(body.length).push(frame);
    expect(events).toHaveLength(1);
    expect(events[0].kind).toBe('frame');
  });

  test('zero length: one bad-length event, then nothing, whatever follows', () => {
    const decoder = new FrameDecoder(1024);
    const good = encodeFrame({ id: 1, cmd: 'ping' });
    expect(decoder.push(Buffer.concat([hex('00000000'), good]))).toEqual([{ kind: 'bad-length', length: 0 }]);
    expect(decoder.push(good)).toEqual([]);
    expect(decoder.push(Buffer.concat([good, good]))).toEqual([]);
    expect(decoder.pending).toBe(0);
  });

  test('zero length arriving byte by byte', () => {
    const decoder = new FrameDecoder(1024);
    expect(feed(decoder, bytewise(Buffer.concat([hex('00000000'), encodeFrame({ id: 1 })])))).toEqual([
      { kind: 'bad-length', length: 0 },
    ]);
  });

  test.each([
    [1025],
    [2 ** 20 + 1],
    [2 ** 32 - 1],
  ])('oversize length %p: one bad-length event as soon as the header is in, then nothing', (length) => {
    const decoder = new FrameDecoder(1024);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(length);
    expect(decoder.push(header)).toEqual([{ kind: 'bad-length', length }]);
    expect(decoder.push(Buffer.alloc(2000, 0x90))).toEqual([]);
    expect(decoder.push(encodeFrame({ id: 1 }))).toEqual([]);
    expect(decoder.pending).toBe(0);
  });

  test('good frames before a bad length are delivered, nothing after it', () => {
    const decoder = new FrameDecoder(64);
    const good = encodeFrame({ id: 1, cmd: 'ping' });
    const events = decoder.push(Buffer.concat([good, good, hex('00000041'), good]));
    expect(events.map((e) => e.kind)).toEqual(['frame', 'frame', 'bad-length']);
    expect(events[2]).toEqual({ kind: 'bad-length', length: 65 });
    expect(decoder.push(good)).toEqual([]);
  });
});

describe('rejected bodies (BAD_MESSAGE)', () => {
  const id1 = cat(fixstr('id'), '01');

  test('reserved byte 0xc1 at top level', () => {
    expectRejected(hex('c1'), /0xc1/);
  });

  test.each([
    ['as a map value', cat('82', id1, fixstr('x'), 'c1')],
    ['inside a nested array', cat('82', id1, fixstr('x'), '92 01 c1')],
    ['deep inside maps and arrays', cat('81', fixstr('a'), '91 81', fixstr('b'), '93 c0 c3 c1')],
    ['as an array element', hex('93 01 02 c1')],
  ])('reserved byte 0xc1 %s', (_where, body) => {
    expectRejected(body, /0xc1/);
  });

  test.each([
    ['fixext1 0xd4', 'd4 01 00'],
    ['fixext2 0xd5', 'd5 01 0000'],
    ['fixext4 0xd6', 'd6 01 00000000'],
    ['fixext8 0xd7', 'd7 01 0000000000000000'],
    ['fixext16 0xd8', 'd8 01 00000000000000000000000000000000'],
    ['ext8 0xc7', 'c7 03 01 000000'],
    ['ext16 0xc8', 'c8 0003 01 000000'],
    ['ext32 0xc9', 'c9 00000003 01 000000'],
    ['timestamp32 (ext -1)', 'd6 ff 5f5e1000'],
    ['timestamp96 (ext8 -1)', 'c7 0c ff 000000000000000060000000'],
    ['msgpackr record fixext 0x72', 'd4 72 40'],
  ])('%s, at top level and nested in a request', (_name, ext) => {
    expectRejected(hex(ext), /extension/);
    expectRejected(cat('83', id1, fixstr('cmd'), fixstr('connect'), fixstr('nodeId'), '91', ext), /extension/);
  });

  test('msgpackr records (useRecords: true)', () => {
    const bytes = new Packr({ useRecords: true }).pack({ id: 1, cmd: 'ping' });
    expectRejected(bytes);
    // and a structure written once the record definition is known
    const packr = new Packr({ useRecords: true });
    packr.pack({ id: 1, cmd: 'ping' });
    expectRejected(packr.pack({ id: 2, cmd: 'ping' }));
  });

  test('msgpackr structured clone (shared and cyclic references)', () => {
    const shared = { x: 1 };
    const cyclic: Record<string, unknown> = { id: 1, cmd: 'ping' };
    cyclic.self = cyclic;
    const packr = new Packr({ structuredClone: true, useRecords: false });
    expectRejected(packr.pack({ a: shared, b: shared }));
    expectRejected(packr.pack(cyclic));
    expectRejected(new Packr({ structuredClone: true }).pack({ id: 1, cmd: 'ping', when: new Date(0) }));
  });

  test.each([
    ['Set', () => new Set([1, 2, 3])],
    ['RegExp', () => /ab+c/gi],
    ['Error', () => new Error('boom')],
    ['Map', () => new Map([[1, 2]])],
    ['Date', () => new Date(0)],
  ])('msgpackr moreTypes %s', (_name, make) => {
    const packr = new Packr({ moreTypes: true, useRecords: false });
    expectRejected(packr.pack(make()));
    expectRejected(packr.pack({ id: 1, cmd: 'connect', nodeId: make() }));
  });

  test('msgpackr typed-array extension (what moreTypes writes for a Float64Array outside jest)', () => {
    // Inside jest's vm realm msgpackr does not recognise the test's Float64Array, so
    // these are the bytes it writes for new Float64Array([1.5]) in plain Node.
    expectRejected(hex('c7 09 74 08 000000000000f83f'), /extension/);
  });

  test.each([
    ['positive int', cat('81 01 02')],
    ['negative int', cat('81 ff 02')],
    ['nil', cat('81 c0 02')],
    ['true', cat('81 c3 02')],
    ['float', cat('81 cb 3ff8000000000000 02')],
    ['bin8', cat('81 c4 02', Buffer.from('id'), '02')],
    ['array', cat('81 91 01 02')],
    ['map', cat('81 81', fixstr('a'), '01 02')],
    ['int as the second key', cat('82', id1, '07 02')],
    ['int key in a map16', cat('de 0001 cc 07 02')],
    ['int key in a nested map', cat('82', id1, fixstr('nodeId'), '81 01 02')],
  ])('non-string map key: %s', (_name, body) => {
    expectRejected(body, /not a string/);
  });

  test('truncated: every proper prefix of a valid request is rejected', () => {
    const body = bodyOf({ id: 2 ** 40, cmd: 'generate', n: 3, wait: 'connected', nodes: [1.5, 'x'.repeat(40), Buffer.alloc(3)] });
    expect(checkPlain(body)).toBeNull();
    for (let len = 0; len < body.length; len++) expectRejected(body.subarray(0, len), /truncated/);
  });

  test.each([
    ['str8 length past the end', 'd9 10 6162'],
    ['bin16 length past the end', 'c5 0100 00'],
    ['map missing its last value', cat('82', id1, fixstr('cmd')).toString('hex')],
    ['float64 cut short', 'cb 3ff8'],
    ['array16 header cut short', 'dc 00'],
  ])('truncated: %s', (_name, body) => {
    expectRejected(hex(body), /truncated/);
  });

  test.each([
    ['nil after a map', cat('81', id1, 'c0')],
    ['two maps', cat('81', id1, '81', id1)],
    ['one byte after an int', hex('01 02')],
  ])('trailing bytes: %s', (_name, body) => {
    expectRejected(body, /trailing/);
  });

  test('nesting: 63 levels accepted, 65 and more rejected (arrays and maps), without recursion', () => {
    const arrays = (depth: number) => cat(Buffer.alloc(depth, 0x91), '01');
    const maps = (depth: number) => cat(...Array.from({ length: depth }, () => cat('81', fixstr('a'))), '01');
    expect(checkPlain(arrays(63))).toBeNull();
    expect(checkPlain(maps(63))).toBeNull();
    let inner: unknown = 1;
    for (let i = 0; i < 63; i++) inner = [inner];
    expect(decodeBody(arrays(63))).toEqual(inner);
    for (const depth of [65, 66, 200]) {
      expectRejected(arrays(depth), /nested deeper/);
      expectRejected(maps(depth), /nested deeper/);
    }
    // a million levels must not blow the stack
    expectRejected(cat(Buffer.alloc(1_000_000, 0x91), '01'), /nested deeper/);
    // depth inside a request map counts too
    expectRejected(cat('82', id1, fixstr('x'), arrays(70)), /nested deeper/);
  });

  test('exactly 64 nested containers are accepted', () => {
    expect(checkPlain(cat(Buffer.alloc(64, 0x91), '01'))).toBeNull();
  });

  test.each([
    ['array32 with 2^32-1 elements', 'dd ffffffff 0000000000'],
    ['map32 with 2^32-1 entries', 'df ffffffff 0000000000'],
    ['array16 with 65535 elements', 'dc ffff 01010101010101'],
    ['map16 with 65535 entries', 'de ffff a0010101010101'],
    ['str32 of 4 GiB', 'db ffffffff 6162636465'],
    ['bin32 of 4 GiB', 'c6 ffffffff 0102030405'],
    ['array32 inside a request', cat('82', id1, fixstr('x'), 'dd ffffffff').toString('hex')],
  ])('huge declared length: %s (10-ish byte body)', (_name, body) => {
    const buf = hex(body);
    expect(buf.length).toBeLessThanOrEqual(16);
    const before = process.memoryUsage().arrayBuffers;
    expectRejected(buf, /truncated/);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * 1024 * 1024);
  });

  test('empty body', () => {
    expectRejected(Buffer.alloc(0), /truncated/);
  });
});

describe('accepted: bytes as a Rust (rmp) or Python client writes them', () => {
  const ping = (idBytes: string) => cat('82', fixstr('id'), idBytes, fixstr('cmd'), fixstr('ping'));

  test.each([
    ['positive fixint', '05', 5],
    ['uint8 0xcc', 'cc ff', 255],
    ['uint16 0xcd', 'cd 0100', 256],
    ['uint32 0xce', 'ce 00010000', 65536],
    ['uint32 max', 'ce ffffffff', 4294967295],
    ['uint64 0xcf, small value', 'cf 0000000000000007', 7],
    ['uint64 0xcf, 2^40', 'cf 0000010000000000', 2 ** 40],
    ['uint64 0xcf, 2^53-1', 'cf 001fffffffffffff', Number.MAX_SAFE_INTEGER],
    ['int8 0xd0 positive', 'd0 05', 5],
    ['int16 0xd1 positive', 'd1 0100', 256],
    ['int32 0xd2 positive', 'd2 00010000', 65536],
    ['int64 0xd3 positive', 'd3 0000000000000009', 9],
    ['int64 0xd3, a timestamp', cat('d3', i64(1700000000123n)).toString('hex'), 1700000000123],
  ])('id as %s', (_name, idBytes, expected) => {
    const back = decodeBody(ping(idBytes)) as { id: unknown; cmd: unknown };
    expect(back).toEqual({ id: expected, cmd: 'ping' });
    expect(typeof back.id).toBe('number');
  });

  test.each([
    ['negative fixint', 'ff', -1],
    ['negative fixint -32', 'e0', -32],
    ['int8', 'd0 80', -128],
    ['int16', 'd1 8000', -32768],
    ['int32', 'd2 80000000', -(2 ** 31)],
    ['int64', cat('d3', i64(-(2n ** 40n))).toString('hex'), -(2 ** 40)],
    ['int64 min safe', cat('d3', i64(-(2n ** 53n) + 1n)).toString('hex'), -Number.MAX_SAFE_INTEGER],
  ])('negative %s', (_name, bytes, expected) => {
    expect(decodeBody(cat('81', fixstr('v'), bytes))).toEqual({ v: expected });
  });

  test('int64 below -2^53 decodes as bigint', () => {
    expect(decodeBody(cat('81', fixstr('v'), 'd3', i64(-(2n ** 63n))))).toEqual({ v: -(2n ** 63n) });
  });

  test('str8, str16 and str32 keys; map16/map32; array16/array32; bin8/bin16; float32', () => {
    const body = cat(
      'de 0005',
      'd9 02', Buffer.from('id'), 'cd 1234',
      'da 0003', Buffer.from('cmd'), 'd9 07', Buffer.from('connect'),
      'db 00000003', Buffer.from('pid'), 'ce 00012345',
      'd9 06', Buffer.from('nodeId'),
      'df 00000003',
      /**/ fixstr('list'), 'dc 0003 01 ff cb 3ff8000000000000',
      /**/ fixstr('list32'), 'dd 00000002 c2 c3',
      /**/ fixstr('raw'), 'c4 03 00c1ff',
      fixstr('more'), '93 c5 0002 abcd ca 3fc00000 d9 05', Buffer.from('héll', 'utf8'),
    );
    expect(checkPlain(body)).toBeNull();
    const back = decodeBody(body) as Record<string, any>;
    expect(Object.keys(back)).toEqual(['id', 'cmd', 'pid', 'nodeId', 'more']);
    expect(back.id).toBe(0x1234);
    expect(back.cmd).toBe('connect');
    expect(back.pid).toBe(0x12345);
    expect(back.nodeId.list).toEqual([1, -1, 1.5]);
    expect(back.nodeId.list32).toEqual([false, true]);
    expect(Buffer.from(back.nodeId.raw).equals(hex('00c1ff'))).toBe(true);
    expect(Buffer.from(back.more[0]).equals(hex('abcd'))).toBe(true);
    expect(back.more[1]).toBe(1.5);
    expect(back.more[2]).toBe('héll');
  });

  test('an rmp-style generate request (compact ints, u64 id)', () => {
    const body = cat(
      '85',
      fixstr('id'), 'cf', u64(12345678901n),
      fixstr('cmd'), fixstr('generate'),
      fixstr('n'), '03',
      fixstr('wait'), fixstr('connected'),
      fixstr('timeoutMs'), 'cd 4e20',
    );
    expect(decodeBody(body)).toEqual({ id: 12345678901, cmd: 'generate', n: 3, wait: 'connected', timeoutMs: 20000 });
  });

  test.each([
    ['2^64-1', 2n ** 64n - 1n],
    ['2^63', 2n ** 63n],
    ['2^63+12345', 2n ** 63n + 12345n],
  ])('uint64 id %s decodes as a bigint and is echoed as the identical 0xcf bytes', (_name, id) => {
    const idBytes = cat('cf', u64(id));
    const request = decodeBody(ping(idBytes.toString('hex'))) as { id: unknown };
    expect(typeof request.id).toBe('bigint');
    expect(request.id).toBe(id);
    const reply = bodyOf({ id: request.id, ok: true, pong: true });
    expect(reply).toEqual(cat('83', fixstr('id'), idBytes, fixstr('ok'), 'c3', fixstr('pong'), 'c3'));
  });

  test('uint64 id just above 2^53 decodes as a bigint and is echoed as the same 64-bit integer', () => {
    const id = 2n ** 53n + 1n;
    const request = decodeBody(ping(cat('cf', u64(id)).toString('hex'))) as { id: unknown };
    expect(typeof request.id).toBe('bigint');
    expect(request.id).toBe(id);
    const reply = bodyOf({ id: request.id });
    expect(reply.subarray(0, 4)).toEqual(cat('81', fixstr('id')));
    expectInt64At(reply, 4, id);
    expect((decodeBody(reply) as { id: unknown }).id).toBe(id);
  });

  // msgpackr writes every bigint below 2^63 as int64 (0xd3): a u64 id in (2^53, 2^63)
  // that arrived as 0xcf comes back as the same integer in the other width, which
  // rmp-serde and msgpack-python read back as that u64 (documented in the README).
  test('uint64 id 2^53+1 is echoed as the same integer, in int64 form', () => {
    const idBytes = cat('cf', u64(2n ** 53n + 1n));
    const request = decodeBody(ping(idBytes.toString('hex'))) as { id: unknown };
    const reply = bodyOf({ id: request.id });
    expect(reply).toEqual(cat('81', fixstr('id'), 'd3', u64(2n ** 53n + 1n)));
    expect((decodeBody(reply) as { id: unknown }).id).toBe(2n ** 53n + 1n);
  });
});

// ---- interop with a real MessagePack implementation (Python msgpack) ----------

/** What Python reports for a decoded value (see TAG_PY): keeps int vs float apart. */
function pyTag(v: unknown): unknown {
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return v;
  if (typeof v === 'bigint') return { int: v.toString() };
  if (typeof v === 'number') return Number.isInteger(v) ? { int: BigInt(v).toString() } : { float: v };
  if (v instanceof Uint8Array) return { bin: Buffer.from(v).toString('hex') };
  if (Array.isArray(v)) return v.map(pyTag);
  if (typeof v === 'object') {
    return { map: Object.entries(v as object).filter(([, x]) => x !== undefined).map(([k, x]) => [k, pyTag(x)]) };
  }
  throw new Error(`cannot tag ${typeof v}`);
}

const TAG_PY = `
import json, math, struct, sys, msgpack
def tag(v):
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return {"int": str(v)}
    if isinstance(v, float):
        return {"float": v if math.isfinite(v) else repr(v)}
    if isinstance(v, bytes):
        return {"bin": v.hex()}
    if isinstance(v, list):
        return [tag(x) for x in v]
    if isinstance(v, dict):
        return {"map": [[tag(k), tag(x)] for k, x in v.items()]}
    return {"other": type(v).__name__ + ":" + repr(v)}
`;

// Reads concatenated frames from stdin, decodes each body with msgpack, prints the tags.
const DECODE_FRAMES_PY = `${TAG_PY}
data = sys.stdin.buffer.read()
out, pos = [], 0
while pos < len(data):
    (n,) = struct.unpack(">I", data[pos:pos + 4])
    body = data[pos + 4:pos + 4 + n]
    assert len(body) == n, "short frame"
    out.append(tag(msgpack.unpackb(body, raw=False, strict_map_key=True)))
    pos += 4 + n
print(json.dumps(out))
`;

describeIfPython(`interop with Python msgpack (${PYTHON})`, () => {
  test('Python decodes our frames to the same values; timestamps are ints, not floats', () => {
    const now = Date.now();
    const messages: unknown[] = [
      REQUEST,
      REPLY,
      { id: 2n ** 64n - 1n, ok: true, pong: true, time: now },
      { id: 7, ok: true, host: { cpus: [0.5, 12.25, 100], load: 37.5, memUsed: 2 ** 33 + 1, memTotal: 2 ** 34 }, nodes: [] },
      { id: null, ok: false, error: { code: 'BAD_MESSAGE', message: 'body is not a map' } },
      { event: 'node', generation: 3, index: 0, pid: 99, state: 'killed', exitCode: null, signal: 'SIGKILL', dropped: undefined },
      [-1, -129, -(2 ** 31) - 1, -(2 ** 53) + 1, 2 ** 32, 2 ** 53 - 1, 'ü'.repeat(300), Buffer.alloc(300, 7)],
    ];
    const input = Buffer.concat(messages.map((m) => encodeFrame(m)));
    const seen = JSON.parse(runPython(DECODE_FRAMES_PY, input).toString('utf8'));
    expect(seen).toEqual(messages.map(pyTag));
    // spelled out for the field that matters most to a Rust/Python peer
    expect(seen[2].map).toContainEqual(['time', { int: String(now) }]);
    expect(seen[2].map).toContainEqual(['id', { int: '18446744073709551615' }]);
  });

  test('Python sees the uint64 timestamp as an int', () => {
    const now = Date.now();
    const out = runPython(
      'import msgpack, sys\n' +
        'v = msgpack.unpackb(sys.stdin.buffer.read()[4:], raw=False)\n' +
        'assert type(v["t"]) is int, type(v["t"])\n' +
        'print(v["t"])',
      encodeFrame({ t: now }),
    );
    expect(out.toString().trim()).toBe(String(now));
  });

  test('we decode frames Python produced (packb with use_bin_type=True)', () => {
    const out = runPython(`
import msgpack, struct, sys, time
now = time.time_ns() // 1000000
msgs = [
    {"id": 1, "cmd": "hello", "client": "py"},
    {"id": 2**64 - 1, "cmd": "connect", "pid": 12345, "nodeId": {"name": "nœud", "raw": b"\\x00\\xc1\\xff",
        "list": [1, -1, -2**63, 2**32, 2**53 + 1, 1.5, None, True, False]}},
    {"id": 300, "cmd": "generate", "n": 3, "wait": "connected", "timeoutMs": 20000, "interface": "10.0.0.1:7071"},
    {"id": 70000, "cmd": "ping", "long": "é" * 300, "list": list(range(20)), "map": {"k%d" % i: i for i in range(20)}},
    {"id": 5, "cmd": "status", "t": now},
]
sys.stdout.buffer.write(b"".join(struct.pack(">I", len(b)) + b for b in (msgpack.packb(m, use_bin_type=True) for m in msgs)))
`);
    // through the frame decoder in awkward 3-byte chunks
    const chunks: Buffer[] = [];
    for (let i = 0; i < out.length; i += 3) chunks.push(out.subarray(i, i + 3));
    const got = bodies(feed(new FrameDecoder(1 << 20), chunks)) as Record<string, any>[];
    expect(got).toHaveLength(5);
    expect(got[0]).toEqual({ id: 1, cmd: 'hello', client: 'py' });
    expect(got[1].id).toBe(2n ** 64n - 1n);
    expect(got[1].pid).toBe(12345);
    expect(got[1].nodeId.name).toBe('nœud');
    expect(Buffer.from(got[1].nodeId.raw).equals(hex('00c1ff'))).toBe(true);
    expect(got[1].nodeId.list).toEqual([1, -1, -(2n ** 63n), 2 ** 32, 2n ** 53n + 1n, 1.5, null, true, false]);
    expect(got[2]).toEqual({ id: 300, cmd: 'generate', n: 3, wait: 'connected', timeoutMs: 20000, interface: '10.0.0.1:7071' });
    expect(got[3].id).toBe(70000);
    expect(got[3].long).toBe('é'.repeat(300));
    expect(got[3].list).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(Object.keys(got[3].map)).toHaveLength(20);
    expect(got[3].map.k19).toBe(19);
    expect(typeof got[4].t).toBe('number');
    expect(Math.abs(got[4].t - Date.now())).toBeLessThan(60_000);
    // and what we send back is what Python sent, value for value
    const echoed = JSON.parse(runPython(DECODE_FRAMES_PY, Buffer.concat(got.map((m) => encodeFrame(m)))).toString());
    const original = JSON.parse(runPython(DECODE_FRAMES_PY, out).toString());
    expect(echoed).toEqual(original);
  });

  test('we reject what Python can produce but the contract forbids', () => {
    const out = runPython(`
import datetime, msgpack, struct, sys
bad = [
    msgpack.packb({1: "int key"}),
    msgpack.packb({"id": 1, "cmd": "connect", "nodeId": msgpack.ExtType(5, b"xy")}),
    msgpack.packb({"id": 1, "t": datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)}, datetime=True),
    msgpack.packb({"id": 1, "cmd": "ping"}) + msgpack.packb(None),
]
sys.stdout.buffer.write(b"".join(struct.pack(">I", len(b)) + b for b in bad))
`);
    const events = new FrameDecoder(1 << 20).push(out);
    expect(events).toHaveLength(4);
    for (const e of events) {
      if (e.kind !== 'frame') throw new Error('expected frames');
      expectRejected(e.body);
    }
  });
});
