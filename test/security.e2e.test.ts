// Authentication and exposure through the real `herd manager` command: the
// refusal to listen openly without a token, HERD_TOKEN_FILE, the warning about
// a token file others can read, the auth deadline (HERD_AUTH_TIMEOUT_MS), and
// the token handed to nodes.

import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { HerdClient } from '../src/client';
import { decodeBody, FrameDecoder } from '../src/codec';
import { isAlive } from '../src/proc';
import { CLI, eventually, startManager, tmpDir } from './helpers';

jest.setTimeout(30000);

test('a non-loopback --host without a token: exit 2, a message that says how to make a token, nothing listens', () => {
  const res = spawnSync(process.execPath, [CLI, 'manager', '--host', '0.0.0.0', '--port', '0', '--log-dir', tmpDir()], {
    encoding: 'utf8',
    env: { ...process.env, HERD_TOKEN_FILE: '' },
    timeout: 10000,
  });
  expect(res.status).toBe(2);
  expect(res.stdout).not.toContain('listening');
  expect(res.stderr).toContain('refusing to listen on 0.0.0.0 without a token');
  expect(res.stderr).toContain('openssl rand -hex 32 > ');
  expect(res.stderr).toContain('--token-file');
});

test('HERD_TOKEN_FILE: a world-readable file draws a warning; strangers are cut off in time; nodes get the token and stay', async () => {
  const file = path.join(tmpDir(), 'token');
  writeFileSync(file, 'e2e-secret\n', { mode: 0o644 });
  const m = await startManager([], { HERD_TOKEN_FILE: file, HERD_AUTH_TIMEOUT_MS: '500' });
  try {
    expect(m.stderr()).toContain(`chmod 600 ${file}`);
    // The file transport writes asynchronously: the warning may reach stderr first.
    await eventually(() => readFileSync(path.join(m.logDir, 'manager.log'), 'utf8').includes('readable by other users'), 5000, 'the warning in manager.log');

    // A stranger that says nothing is closed after the deadline, with a reason.
    const started = Date.now();
    const said = await new Promise<unknown[]>((resolve) => {
      const socket = net.connect({ host: m.host, port: m.port });
      const decoder = new FrameDecoder(1 << 20);
      const messages: unknown[] = [];
      socket.on('data', (c) => decoder.push(c).forEach((f) => f.kind === 'frame' && messages.push(decodeBody(f.body))));
      socket.on('close', () => resolve(messages));
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(450);
    expect(said).toEqual([{ id: null, ok: false, error: { code: 'UNAUTHENTICATED', message: expect.stringContaining('no valid hello within 500 ms') } }]);

    const c = await HerdClient.connect(m.address, { token: 'e2e-secret' });
    const g = await c.generate(2, { wait: 'connected', timeoutMs: 20000 });
    for (const n of g.nodes) {
      expect(readFileSync(`/proc/${n.pid}/environ`, 'latin1').split('\0')).toContain('HERD_TOKEN=e2e-secret');
    }
    // The example node exits when its manager connection closes: past the deadline, they are still there.
    await new Promise((r) => setTimeout(r, 800));
    for (const n of g.nodes) expect(isAlive(n.pid)).toBe(true);
    expect((await c.status()).counts.running).toBe(2);
    expect((await c.ping()).pong).toBe(true);
    await c.close();
  } finally {
    expect(await m.stop()).toBe(0);
  }
});
