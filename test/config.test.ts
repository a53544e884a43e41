// `herd manager` configuration that guards exposure: the token file (flag or
// HERD_TOKEN_FILE), its permissions, refusing a non-loopback address without a
// token, --insecure, and HERD_AUTH_TIMEOUT_MS.

import { chmodSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, DEFAULT_AUTH_TIMEOUT_MS, isLoopback, parseManagerArgs } from '../src/config';
import { tmpDir } from './helpers';

function tokenFile(mode: number, content = 'the-token\n'): string {
  const file = path.join(tmpDir(), 'token');
  writeFileSync(file, content);
  chmodSync(file, mode);
  return file;
}

const parse = (argv: string[], env: NodeJS.ProcessEnv = {}) => parseManagerArgs(argv, env);

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('token file', () => {
  test('HERD_TOKEN_FILE is used when --token-file is not given; the flag wins', () => {
    const fromEnv = tokenFile(0o600, 'env-token\n');
    const fromFlag = tokenFile(0o600, 'flag-token\n');
    expect(parse([], { HERD_TOKEN_FILE: fromEnv }).token).toBe('env-token');
    expect(parse(['--token-file', fromFlag], { HERD_TOKEN_FILE: fromEnv }).token).toBe('flag-token');
    expect(parse([], { HERD_TOKEN_FILE: '' }).token).toBeNull();
    expect(parse([]).token).toBeNull();
  });

  test('errors name where the file came from', () => {
    expect(configError(() => parse([], { HERD_TOKEN_FILE: '/nonexistent/token' })).message).toMatch(/^cannot read HERD_TOKEN_FILE \/nonexistent\/token/);
    expect(configError(() => parse(['--token-file', '/nonexistent/token'])).message).toMatch(/^cannot read --token-file/);
    expect(configError(() => parse(['--token-file', tokenFile(0o600, ' \n')])).message).toMatch(/empty.*openssl rand -hex 32 >/);
  });

  test.each([0o644, 0o640, 0o604, 0o444].map((m) => [m.toString(8), m]))('mode 0%s (readable by others) draws a warning that says chmod 600', (_name, mode) => {
    const file = tokenFile(mode);
    const { token, warnings } = parse(['--token-file', file]);
    expect(token).toBe('the-token');
    expect(warnings).toEqual([expect.stringContaining(`chmod 600 ${file}`)]);
    expect(warnings[0]).toContain(`mode 0${mode.toString(8)}`);
  });

  test.each([0o600, 0o400, 0o700].map((m) => [m.toString(8), m]))('mode 0%s draws no warning', (_name, mode) => {
    expect(parse(['--token-file', tokenFile(mode)]).warnings).toEqual([]);
  });
});

describe('exposure', () => {
  test.each(['127.0.0.1', '127.1.2.3', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', 'localhost'])('%s is loopback', (host) => {
    expect(isLoopback(host)).toBe(true);
    expect(parse(['--host', host]).warnings).toEqual([]);
  });

  test.each(['0.0.0.0', '::', '10.1.2.3', '192.168.0.7', '::ffff:10.0.0.1', 'fe80::1', 'node7.example.org'])(
    '%s without a token is refused, with a message that says how to make one',
    (host) => {
      expect(isLoopback(host)).toBe(false);
      const err = configError(() => parse(['--host', host]));
      expect(err.message).toContain(`refusing to listen on ${host} without a token`);
      expect(err.message).toContain('openssl rand -hex 32 > ');
      expect(err.message).toContain('--token-file');
      expect(err.message).toContain('--insecure');
    },
  );

  test('a non-loopback address picked from MANAGER_IPS is refused too', () => {
    const mine = Object.values(os.networkInterfaces()).flat().find((a) => a && !a.internal && a.family === 'IPv4')?.address;
    if (mine === undefined) return; // no non-loopback interface here: nothing MANAGER_IPS could pick
    expect(configError(() => parse([], { MANAGER_IPS: `10.255.255.254,${mine}` })).message).toContain(`refusing to listen on ${mine}`);
  });

  test('with a token, or with --insecure (and a warning), a non-loopback address is allowed', () => {
    const withToken = parse(['--host', '0.0.0.0', '--token-file', tokenFile(0o600)]);
    expect(withToken).toMatchObject({ host: '0.0.0.0', token: 'the-token', insecure: false, warnings: [] });
    const insecure = parse(['--host', '0.0.0.0', '--insecure']);
    expect(insecure).toMatchObject({ host: '0.0.0.0', token: null, insecure: true });
    expect(insecure.warnings).toEqual([expect.stringMatching(/without a token \(--insecure\): anyone who can reach 0\.0\.0\.0/)]);
  });

  test('--help is not refused', () => {
    expect(parse(['--host', '0.0.0.0', '--help']).help).toBe(true);
  });
});

test('HERD_AUTH_TIMEOUT_MS: default 10 s, any positive integer of ms, anything else refused', () => {
  expect(parse([]).authTimeoutMs).toBe(DEFAULT_AUTH_TIMEOUT_MS);
  expect(DEFAULT_AUTH_TIMEOUT_MS).toBe(10_000);
  expect(parse([], { HERD_AUTH_TIMEOUT_MS: '250' }).authTimeoutMs).toBe(250);
  for (const bad of ['0', '-5', '1.5', 'soon']) {
    expect(configError(() => parse([], { HERD_AUTH_TIMEOUT_MS: bad })).message).toMatch(/^HERD_AUTH_TIMEOUT_MS must be an integer/);
  }
});
