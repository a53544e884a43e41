// Property-based tests (fast-check) of the network edge: the codec and the
// request validator must hold their invariants for any input, not just the
// examples in codec.test.ts.

import fc from 'fast-check';
import { BadMessage, checkPlain, decodeBody, encodeFrame, FrameDecoder, FrameEvent, HEADER_BYTES } from '../src/codec';
import { COMMANDS, CommandParams, TOPICS, WAIT_MODES } from '../src/protocol';
import { validateRequest } from '../src/validate';

const DANGEROUS_KEYS = ['__proto__', '__proto_', 'constructor', 'prototype', 'toString', 'valueOf', 'hasOwnProperty', '__defineGetter__'];
const key = fc.oneof(fc.string({ maxLength: 10 }), fc.constantFrom(...DANGEROUS_KEYS, 'id', 'cmd', 'n', 'pid'));

/** Any value plain MessagePack can carry, as our encoder accepts it. */
const leaf = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.integer({ min: -(2 ** 31), max: 2 ** 32 - 1 }),
  fc.maxSafeInteger(),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }),
  fc.double(),
  fc.uint8Array({ maxLength: 16 }),
);
const { value } = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('value'), { maxLength: 4 }), fc.dictionary(key, tie('value'), { maxKeys: 4 })),
}));

/**
 * A comparable form of a decoded value: integers by exact value (whatever their
 * JS type), bytes as hex, maps as sorted entries (key order is not part of the contract).
 */
function canon(v: unknown): unknown {
  if (typeof v === 'bigint') return { int: v.toString() };
  if (typeof v === 'number') return Number.isInteger(v) ? { int: BigInt(v).toString() } : { float: Number.isNaN(v) ? 'NaN' : v };
  if (v instanceof Uint8Array) return { bin: Buffer.from(v).toString('hex') };
  if (Array.isArray(v)) return v.map(canon);
  if (v !== null && typeof v === 'object') {
    return { map: Object.entries(v).map(([k, x]) => [k, canon(x)]).sort(([a], [b]) => ((a as string) < (b as string) ? -1 : 1)) };
  }
  return v;
}

/** What the peer should get for `v`: msgpackr receives a `__proto__` key as `__proto_` (the later one wins). */
function received(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(received);
  if (v !== null && typeof v === 'object' && !(v instanceof Uint8Array)) {
    const out: Record<string, unknown> = Object.create(null);
    for (const [k, x] of Object.entries(v)) out[k === '__proto__' ? '__proto_' : k] = received(x);
    return out;
  }
  return v;
}

/** Every map in a decoded value is a plain object with Object.prototype as its prototype. */
function plainObjectsOnly(v: unknown): boolean {
  if (Array.isArray(v)) return v.every(plainObjectsOnly);
  if (v === null || typeof v !== 'object' || v instanceof Uint8Array) return true;
  return Object.getPrototypeOf(v) === Object.prototype && Object.values(v).every(plainObjectsOnly);
}

const bodyOf = (v: unknown) => encodeFrame(v).subarray(HEADER_BYTES);
const prototypeKeys = () => Object.getOwnPropertyNames(Object.prototype).sort();

describe('codec', () => {
  const protoBefore = prototypeKeys();
  afterAll(() => expect(prototypeKeys()).toEqual(protoBefore));

  test('encode then decode gives back the value; what we write is plain MessagePack; nothing decoded has another prototype', () => {
    fc.assert(
      fc.property(value, (v) => {
        const frame = encodeFrame(v);
        expect(frame.readUInt32BE(0)).toBe(frame.length - HEADER_BYTES);
        const body = frame.subarray(HEADER_BYTES);
        expect(checkPlain(body)).toBeNull();
        const back = decodeBody(body);
        expect(canon(back)).toEqual(canon(received(v)));
        expect(plainObjectsOnly(back)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  test('an own __proto__ key is written as a key, never turned into a prototype', () => {
    fc.assert(
      fc.property(value, (v) => {
        const obj = JSON.parse('{"__proto__": {"polluted": true}}');
        obj.x = v;
        const back = decodeBody(bodyOf(obj)) as Record<string, unknown>;
        expect(back.__proto_).toEqual({ polluted: true });
        expect(back.polluted).toBeUndefined();
      }),
      { numRuns: 100 },
    );
  });

  test('integers are never written as floats (a Rust u64 field would reject them)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.maxSafeInteger(), fc.integer()), (n) => {
        const body = bodyOf({ v: n });
        // 81 a1 76 <value>: the value's first byte is an integer marker, not float32/float64.
        expect([0xca, 0xcb]).not.toContain(body[3]);
      }),
      { numRuns: 1000 },
    );
  });

  test('decodeBody on any bytes returns a value or throws BadMessage, nothing else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          decodeBody(bytes);
          expect(checkPlain(bytes)).toBeNull();
        } catch (err) {
          expect(err).toBeInstanceOf(BadMessage);
        }
      }),
      { numRuns: 3000 },
    );
  });

  test('decodeBody on mutated valid bodies returns a value or throws BadMessage, and never pollutes', () => {
    const mutated = fc
      .tuple(value, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'insert', 'delete')), { minLength: 1, maxLength: 4 }))
      .map(([v, edits]) => {
        const bytes = [...bodyOf(v)];
        for (const [at, byte, op] of edits) {
          const i = at % (bytes.length + 1);
          if (op === 'set' && i < bytes.length) bytes[i] = byte;
          else if (op === 'insert') bytes.splice(i, 0, byte);
          else if (op === 'delete') bytes.splice(i, 1);
        }
        return Uint8Array.from(bytes);
      });
    fc.assert(
      fc.property(mutated, (bytes) => {
        let back: unknown;
        try {
          back = decodeBody(bytes);
        } catch (err) {
          expect(err).toBeInstanceOf(BadMessage);
          return;
        }
        expect(plainObjectsOnly(back)).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('FrameDecoder', () => {
  const frames = fc.array(value, { minLength: 1, maxLength: 8 }).map((vs) => vs.map((v) => encodeFrame(v)));

  /** `buf` cut at the given points. */
  const cut = (buf: Buffer, points: number[]) => {
    const at = [...new Set(points.map((p) => p % (buf.length + 1)))].sort((a, b) => a - b);
    const out: Buffer[] = [];
    let prev = 0;
    for (const p of [...at, buf.length]) {
      out.push(buf.subarray(prev, p));
      prev = p;
    }
    return out;
  };

  test('however the stream is chunked, the same frames come out, and at most one frame is buffered', () => {
    fc.assert(
      fc.property(frames, fc.array(fc.nat(), { maxLength: 20 }), (fs, points) => {
        const all = Buffer.concat(fs);
        const maxFrame = Math.max(...fs.map((f) => f.length - HEADER_BYTES));
        const decoder = new FrameDecoder(maxFrame);
        const events: FrameEvent[] = [];
        for (const chunk of cut(all, points)) {
          events.push(...decoder.push(chunk));
          expect(decoder.pending).toBeLessThanOrEqual(HEADER_BYTES + maxFrame - 1);
        }
        expect(decoder.pending).toBe(0);
        expect(events.map((e) => (e.kind === 'frame' ? e.body.toString('hex') : e))).toEqual(fs.map((f) => f.subarray(HEADER_BYTES).toString('hex')));
      }),
      { numRuns: 300 },
    );
  });

  test('on any bytes: frames within 1..maxFrame, at most one bad length and nothing after it, bounded buffering', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 64 }), fc.array(fc.uint8Array({ maxLength: 48 }), { maxLength: 12 }), (maxFrame, chunks) => {
        const decoder = new FrameDecoder(maxFrame);
        let bad = 0;
        for (const chunk of chunks) {
          for (const e of decoder.push(Buffer.from(chunk))) {
            expect(bad).toBe(0);
            if (e.kind === 'bad-length') {
              bad++;
              expect(e.length === 0 || e.length > maxFrame).toBe(true);
            } else {
              expect(e.body.length).toBeGreaterThanOrEqual(1);
              expect(e.body.length).toBeLessThanOrEqual(maxFrame);
            }
          }
          expect(decoder.pending).toBeLessThanOrEqual(HEADER_BYTES + maxFrame - 1);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe('validateRequest', () => {
  const REJECTIONS = ['BAD_MESSAGE', 'UNKNOWN_COMMAND', 'BAD_ARGUMENT'];
  const PARAMS: { [C in keyof CommandParams]: string[] } = {
    hello: ['token', 'client'],
    ping: [],
    generate: ['n', 'wait', 'timeoutMs', 'interface'],
    connect: ['pid', 'nodeId'],
    status: [],
    reset: [],
    kill: ['pid', 'index'],
    stats: [],
    subscribe: ['topics'],
    logs: ['index', 'generation', 'offset', 'maxBytes'],
    timeline: ['generation', 'offset', 'maxBytes'],
    chaos: ['kill', 'everyMs', 'forMs', 'seed', 'stop'],
  };
  const protoBefore = prototypeKeys();
  afterAll(() => expect(prototypeKeys()).toEqual(protoBefore));

  const isId = (v: unknown) => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) || (typeof v === 'bigint' && v >= 0n && v < 2n ** 64n);

  /** The contract's answer shape for any input. */
  function checkVerdict(msg: unknown): void {
    const v = validateRequest(msg);
    const m = msg as Record<string, unknown>;
    const isMap = msg !== null && typeof msg === 'object' && !Array.isArray(msg) && !(msg instanceof Uint8Array);
    const ownId = isMap && Object.prototype.hasOwnProperty.call(msg, 'id') ? m.id : undefined;
    if (v.ok) {
      expect(COMMANDS).toContain(v.command.cmd);
      expect(Object.prototype.hasOwnProperty.call(msg, 'cmd') && m.cmd).toBe(v.command.cmd);
      expect(v.id).toBe(ownId);
      // A command carries its contract's fields and nothing else.
      for (const k of Object.keys(v.command)) expect(['cmd', ...PARAMS[v.command.cmd]]).toContain(k);
      expect(Object.getPrototypeOf(v.command)).toBe(Object.prototype);
    } else {
      expect(REJECTIONS).toContain(v.code);
      expect(typeof v.message).toBe('string');
      expect(v.id).toBe(isMap && isId(ownId) ? ownId : null);
      if (v.code !== 'BAD_MESSAGE') expect(v.id).not.toBeNull();
    }
  }

  test('any JS value: never throws; ok with a contract command, or BAD_MESSAGE / UNKNOWN_COMMAND / BAD_ARGUMENT', () => {
    fc.assert(fc.property(fc.anything({ withNullPrototype: true, withBigInt: true, withTypedArray: true }), checkVerdict), { numRuns: 1000 });
  });

  test('request-shaped maps with wrong, missing and dangerous fields: same guarantees', () => {
    const field = fc.oneof(fc.anything({ maxDepth: 1, withBigInt: true }), fc.nat(), fc.constantFrom(...TOPICS, ...WAIT_MODES, '127.0.0.1:1', '[::1]:7071'));
    const request = fc.record(
      {
        id: fc.oneof(fc.nat(), fc.bigInt({ min: -5n, max: 2n ** 64n + 5n }), field),
        cmd: fc.oneof(fc.constantFrom(...COMMANDS, ...DANGEROUS_KEYS), fc.string(), field),
        n: field, wait: field, timeoutMs: field, interface: field, pid: field, index: field, topics: fc.oneof(field, fc.array(field, { maxLength: 3 })),
        token: field, client: field, nodeId: field, kill: field, everyMs: field, forMs: field, seed: field, stop: field,
      },
      { requiredKeys: [] },
    );
    const withDangerousKeys = fc.tuple(request, fc.dictionary(fc.constantFrom(...DANGEROUS_KEYS), fc.anything({ maxDepth: 1 }))).map(([r, extra]) => {
      for (const [k, x] of Object.entries(extra)) Object.defineProperty(r, k, { value: x, enumerable: true, configurable: true, writable: true });
      return r;
    });
    fc.assert(fc.property(withDangerousKeys, checkVerdict), { numRuns: 1500 });
  });

  test('the same guarantees for whatever comes off the wire (decoded mutated requests)', () => {
    const base = fc.record({ id: fc.nat(), cmd: fc.constantFrom(...COMMANDS), n: fc.nat(10), pid: fc.nat(), topics: fc.constant(['nodes']) });
    const bytes = fc.tuple(base, fc.nat(), fc.integer({ min: 0, max: 255 })).map(([r, at, byte]) => {
      const b = Buffer.from(bodyOf(r));
      b[at % b.length] = byte;
      return b;
    });
    fc.assert(
      fc.property(bytes, (b) => {
        let msg: unknown;
        try {
          msg = decodeBody(b);
        } catch {
          return;
        }
        checkVerdict(msg);
      }),
      { numRuns: 1500 },
    );
  });

  test('even if something polluted Object.prototype, only a message\'s own fields count', () => {
    const proto = Object.prototype as Record<string, unknown>;
    const planted = { id: 7, cmd: 'generate', n: 5, pid: 1, topics: ['nodes'] };
    try {
      Object.assign(proto, planted);
      expect(validateRequest({})).toMatchObject({ ok: false, id: null, code: 'BAD_MESSAGE' });
      expect(validateRequest({ id: 1 })).toMatchObject({ ok: false, id: 1, code: 'BAD_MESSAGE' });
      expect(validateRequest({ id: 1, cmd: 'generate' })).toMatchObject({ ok: false, code: 'BAD_ARGUMENT', message: expect.stringContaining('n must be') });
      expect(validateRequest({ id: 1, cmd: 'subscribe' })).toMatchObject({ ok: false, code: 'BAD_ARGUMENT' });
      expect(validateRequest({ id: 1, cmd: 'kill', index: 0 })).toEqual({ ok: true, id: 1, command: { cmd: 'kill', index: 0 } });
    } finally {
      for (const k of Object.keys(planted)) delete proto[k];
    }
  });

  test('every valid request is accepted, with exactly its values', () => {
    const uint = fc.integer({ min: 0, max: 2 ** 32 - 1 });
    const valid = fc.oneof(
      fc.record({ cmd: fc.constant('hello'), token: fc.string(), client: fc.string() }, { requiredKeys: ['cmd'] }),
      fc.record({ cmd: fc.constantFrom('ping', 'status', 'reset', 'stats') }),
      fc.record(
        { cmd: fc.constant('generate'), n: uint, wait: fc.constantFrom(...WAIT_MODES), timeoutMs: uint, interface: fc.constantFrom('10.0.0.1:7071', '[::1]:1', 'host.example:65535') },
        { requiredKeys: ['cmd', 'n'] },
      ),
      fc.record({ cmd: fc.constant('connect'), pid: fc.integer({ min: 0, max: 2 ** 22 }), nodeId: value }, { requiredKeys: ['cmd', 'pid'] }),
      fc.oneof(fc.record({ cmd: fc.constant('kill'), pid: uint }), fc.record({ cmd: fc.constant('kill'), index: uint })),
      fc.record({ cmd: fc.constant('subscribe'), topics: fc.subarray([...TOPICS]) }),
    );
    fc.assert(
      fc.property(fc.oneof(fc.maxSafeNat(), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })), valid, (id, req) => {
        const decoded = decodeBody(bodyOf({ id, ...req })) as Record<string, unknown>;
        const v = validateRequest(decoded);
        if (!v.ok) throw new Error(`rejected ${JSON.stringify(req)}: ${v.message}`);
        expect(v.id === decoded.id).toBe(true);
        const expected: Record<string, unknown> = { ...decoded };
        delete expected.id;
        if (req.cmd === 'generate') expected.wait ??= 'spawned';
        for (const [k, x] of Object.entries(v.command)) if (x !== undefined) expect(canon(x)).toEqual(canon(expected[k]));
        for (const k of Object.keys(expected)) expect(canon((v.command as Record<string, unknown>)[k])).toEqual(canon(expected[k]));
      }),
      { numRuns: 1000 },
    );
  });
});
