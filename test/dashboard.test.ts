// The dashboard's event stream under pressure, over real HTTP, with a scripted
// manager behind it: a page that stops reading is dropped once it leaves
// `maxUnread` bytes unread (the others go on), and a page that closes is forgotten.

import { EventEmitter } from 'node:events';
import net from 'node:net';
import { Dashboard } from '../src/dashboard';
import type { Logger } from '../src/logger';
import type { StatsEvent } from '../src/protocol';
import { eventually } from './helpers';
import { SseReader } from './sse';

function fakeLogger() {
  const lines: string[] = [];
  const at = (level: string) => (msg: string) => lines.push(`${level} ${msg}`);
  return { lines, logger: { warn: at('warn'), info: at('info'), debug: at('debug'), error: at('error') } as unknown as Logger };
}

/** A manager with no nodes, and a sampler the test drives. */
function sources() {
  const supervisor = Object.assign(new EventEmitter(), { snapshot: () => ({ value: 'idle', context: { nodes: [], generation: 0 }, children: {} }) });
  const sampler = new EventEmitter();
  return { supervisor, sampler };
}

/** A stats sample of 1000 nodes (the fields the dashboard reads): about 40 KB on the stream. */
const bigSample = (time: number) =>
  ({
    event: 'stats',
    time,
    host: { cpus: [1, 2], load: 1.5, memUsed: 1, memTotal: 2 },
    nodes: Array.from({ length: 1000 }, (_, index) => ({ index, pid: 100000 + index, cpu: 1.5, rss: 50_000_000 })),
  }) as unknown as StatsEvent;

describe('dashboard event stream', () => {
  test('listens on loopback only', () => {
    const { supervisor, sampler } = sources();
    const make = (host: string) => new Dashboard({ host, port: 0, title: 't', supervisor: supervisor as never, sampler: sampler as never, logger: fakeLogger().logger });
    expect(() => make('0.0.0.0')).toThrow(/loopback only/);
    expect(() => make('192.168.1.1')).toThrow(/loopback only/);
  });

  test('a page that stops reading is dropped at maxUnread; a reading page goes on; a closed page is forgotten', async () => {
    const { supervisor, sampler } = sources();
    const log = fakeLogger();
    const maxUnread = 1024 * 1024;
    const dash = new Dashboard({ host: '127.0.0.1', port: 0, title: 't', supervisor: supervisor as never, sampler: sampler as never, logger: log.logger, maxUnread });
    const url = await dash.listen();
    const reader = new SseReader(url);
    const stalled = net.connect({ host: '127.0.0.1', port: Number(new URL(url).port) });
    stalled.on('error', () => {});
    let stalledClosed = false;
    stalled.on('close', () => (stalledClosed = true));
    try {
      await reader.waitFor('init');
      stalled.write(`GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      stalled.pause(); // never reads: the kernel's buffers fill, then the server's
      await eventually(() => dash.clientCount === 2, 5000, 'two pages');

      // Push samples until the stalled page is dropped; the kernel absorbs a few MB first.
      let sent = 0;
      let time = 0;
      while (dash.clientCount === 2 && sent < 200 * 1024 * 1024) {
        sampler.emit('sample', bigSample(++time));
        sent += 40_000;
        await new Promise((r) => setImmediate(r)); // the reading page reads in between
      }
      expect(dash.clientCount).toBe(1);
      // Reading again, it finds the stream ended after what the kernel still held.
      stalled.resume();
      await eventually(() => stalledClosed, 5000, 'the stalled page to be disconnected');
      expect(log.lines.filter((l) => l.startsWith('warn dashboard: dropping a page'))).toHaveLength(1);
      expect(log.lines[0]).toMatch(new RegExp(`left \\d+ bytes unread \\(limit ${maxUnread}\\)`));

      // The reading page still gets every sample, the last one included.
      await eventually(() => reader.of('stats').at(-1)?.time === time, 10000, 'the last sample at the reading page');
      expect(reader.of('stats')).toHaveLength(time);

      reader.close();
      await eventually(() => dash.clientCount === 0, 5000, 'the closed page to be forgotten');
    } finally {
      reader.close();
      stalled.destroy();
      await dash.close();
    }
  });
});
