// NodeOutput with real files, in this process: O_APPEND across a truncation,
// offsets that survive a rotation, reads that span node-I.log.1 and node-I.log,
// and how the last lines of a node are cut and decoded.

import { closeSync, existsSync, readFileSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';
import { createLogger } from '../src/logger';
import { lastLines, NodeOutput } from '../src/nodeoutput';
import { eventually, tmpDir } from './helpers';

describe('lastLines', () => {
  test('the last five lines, without the empty one after the final newline', () => {
    const text = Array.from({ length: 9 }, (_, i) => `line ${i}\n`).join('');
    expect(lastLines(Buffer.from(text), false)).toEqual(['line 4', 'line 5', 'line 6', 'line 7', 'line 8']);
    expect(lastLines(Buffer.from('no newline'), false)).toEqual(['no newline']);
    expect(lastLines(Buffer.alloc(0), false)).toEqual([]);
  });

  test('read from mid-output, the cut first line is dropped unless it is all there is', () => {
    expect(lastLines(Buffer.from('ial line\nwhole\n'), true)).toEqual(['whole']);
    expect(lastLines(Buffer.from('one long line cut on both sides'), true)).toEqual(['one long line cut on both sides']);
    expect(lastLines(Buffer.from('end of a long line\n'), true)).toEqual(['end of a long line']);
  });

  test('invalid UTF-8 becomes U+FFFD; CRLF and carriage-return progress show as a terminal would; long lines are cut by code point', () => {
    expect(lastLines(Buffer.from([0x6f, 0x6b, 0xff, 0xfe, 0x0a]), false)).toEqual(['ok\ufffd\ufffd']);
    expect(lastLines(Buffer.from('a\r\nprogress 10%\rprogress 100%\n'), false)).toEqual(['a', 'progress 100%']);
    const long = lastLines(Buffer.from(`${'🙂'.repeat(200)}\n`), false)[0];
    expect([...long]).toHaveLength(160);
    expect(long.endsWith('🙂…')).toBe(true);
  });
});

describe('NodeOutput', () => {
  const logger = createLogger({ console: false });
  const outputs: NodeOutput[] = [];
  afterEach(async () => Promise.all(outputs.splice(0).map((o) => o.stop())));

  function setup(maxBytes: number) {
    const logDir = tmpDir();
    const output = new NodeOutput({ logDir, maxBytes, checkMs: 10, logger });
    outputs.push(output);
    const { fd, output: record } = output.open(1, 0);
    // This process stands in for the node: it is alive, and writes through the same kind of descriptor.
    output.started(record, process.pid);
    return { output, fd, record, file: path.join(logDir, 'nodes', 'gen-1', 'node-0.log') };
  }

  test('a rotation keeps offsets; reads span node-0.log.1 and node-0.log; the writer goes on at the new start, not leaving a hole', async () => {
    const { output, fd, record, file } = setup(1000);
    try {
      writeSync(fd, `${'a'.repeat(2989)}\n${'b'.repeat(10)}`);
      output.start();
      await eventually(() => existsSync(`${file}.1`), 5000, 'a rotation');
      await output.stop();
      expect(statSync(`${file}.1`).size).toBe(3000);
      writeSync(fd, 'after rotation\n');
      // O_APPEND: written at offset 0 of the emptied file (with 'w' it would land at 3000, after a hole).
      expect(readFileSync(file, 'utf8')).toBe('after rotation\n');

      const read = async (offset?: number, maxBytes?: number) => {
        const r = await output.read({ index: 0, offset, maxBytes }, 1);
        if (!('result' in r)) throw new Error(r.error.message);
        return { ...r.result, text: Buffer.from(r.result.data).toString() };
      };
      expect(await read(2995, 10)).toMatchObject({ start: 0, offset: 2995, next: 3005, size: 3015, eof: false, alive: true, pid: process.pid, text: 'bbbbbafter' });
      expect(await read(undefined, 6)).toMatchObject({ offset: 3009, text: 'ation\n', eof: true });
      // Past the end (someone truncated the file): from the start of the current file.
      expect(await read(99999, 5)).toMatchObject({ offset: 3000, text: 'after' });
      expect((await read(0, 0)).text).toBe('');

      output.exited(record);
      // The last lines span both files.
      expect(await output.tail(record)).toEqual([`${'a'.repeat(159)}…`, 'bbbbbbbbbbafter rotation']);
      expect(await read()).toMatchObject({ alive: false });
    } finally {
      closeSync(fd);
    }
  });

  test('a quiet file is checked less often, yet rotated within 8 checks once it grows past the limit; a growing one at the first check', async () => {
    const { output, fd, file } = setup(1000);
    const check = () => (output as unknown as { check(): Promise<void> }).check();
    try {
      // Quiet for 40 checks: the backoff is at its longest.
      for (let i = 0; i < 40; i++) await check();
      writeSync(fd, 'x'.repeat(1500));
      let checks = 0;
      while (!existsSync(`${file}.1`)) {
        if (++checks > 8) throw new Error('not rotated within 8 checks of growing past the limit');
        await check();
      }
      expect(statSync(`${file}.1`).size).toBe(1500);
      // Growing at every check from now on: never skipped, so rotated at the first check past the limit.
      for (const size of [400, 800]) {
        writeSync(fd, 'y'.repeat(400));
        await check();
        expect(statSync(file).size).toBe(size);
      }
      writeSync(fd, 'y'.repeat(400));
      await check();
      expect(statSync(`${file}.1`).size).toBe(1200);
      expect(statSync(file).size).toBe(0);
    } finally {
      closeSync(fd);
    }
  });

  test('unknown generations and indexes get UNKNOWN_NODE with what is known', async () => {
    const { output, fd } = setup(0);
    closeSync(fd);
    expect(await output.read({ index: 0 }, 4)).toEqual({ error: { code: 'UNKNOWN_NODE', message: expect.stringMatching(/^generation 4 has no node output here: .* \(1\)$/) } });
    expect(await output.read({ index: 3 }, 1)).toEqual({ error: { code: 'UNKNOWN_NODE', message: expect.stringContaining('index 3 names no node of generation 1 that started (it has 1)') } });
  });
});
