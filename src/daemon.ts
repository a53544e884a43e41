// `herd manager`: wires config, logger, launcher, supervisor, sampler and server
// together, prints `listening host:port`, and owns the daemon's lifecycle.

import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, MANAGER_USAGE, parseManagerArgs } from './config';
import { Launcher } from './launcher';
import { closeLogger, createLogger, Logger } from './logger';
import { Sampler } from './sampler';
import { formatAddress, isWildcard, ManagerServer } from './server';
import { Supervisor } from './supervisor';

/** The package version, from the package.json above this file (src/ or dist/src/). */
function version(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')).version;
  }
  return 'unknown';
}
const VERSION = version();
const MAX_QUEUE = 1024;

export async function runManager(argv: string[]): Promise<void> {
  let config;
  try {
    config = parseManagerArgs(argv);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`herd manager: ${err.message}\n\n${MANAGER_USAGE}\n`);
    process.exit(2);
  }
  if (config.help) {
    process.stdout.write(`${MANAGER_USAGE}\n`);
    return;
  }

  try {
    mkdirSync(config.logDir, { recursive: true });
  } catch (err) {
    process.stderr.write(`herd manager: cannot create --log-dir ${config.logDir}: ${(err as Error).message}\n`);
    process.exit(1);
  }
  const logger = createLogger({ logDir: config.logDir });
  const fatal = async (message: string) => {
    logger.error(message);
    await closeLogger(logger);
    process.exit(1);
  };

  // HERD_MANAGER is filled in once the port is known, before any node can start.
  const nodeEnv: NodeJS.ProcessEnv = { ...process.env };
  if (config.token !== null) nodeEnv.HERD_TOKEN = config.token;
  const launcher = new Launcher({
    command: config.nodeCommand,
    args: config.nodeArgs,
    env: nodeEnv,
    logDir: config.logDir,
    killGraceMs: config.killGraceMs,
    logger,
  });
  const supervisor = new Supervisor({ launcher, logger, maxQueue: MAX_QUEUE });
  const sampler = new Sampler({
    intervalMs: config.statsIntervalMs,
    logFile: path.join(config.logDir, 'stats.jsonl'),
    nodes: () => supervisor.liveNodes(),
    logger,
  });
  const server = new ManagerServer({
    host: config.host,
    port: config.port,
    maxFrame: config.maxFrame,
    maxNodes: config.maxNodes,
    interfacePort: config.interfacePort,
    token: config.token,
    identity: { version: VERSION, hostname: os.hostname(), pid: process.pid },
    supervisor,
    sampler,
    logger,
    // Every node may hold a connection of its own, beside the controllers.
    maxConnections: config.maxNodes + 1024,
  });

  let address: string;
  try {
    address = await server.listen();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const where = formatAddress(config.host, config.port);
    const hint =
      e.code === 'EADDRINUSE'
        ? 'another process (perhaps another herd manager) is listening there; stop it or choose another --port'
        : e.code === 'EADDRNOTAVAIL'
          ? 'that address is not assigned to this machine; check --host and MANAGER_IPS'
          : 'check --host and --port';
    return fatal(`cannot listen on ${where}: ${e.code ?? e.message}; ${hint}`);
  }
  const port = Number(address.slice(address.lastIndexOf(':') + 1));
  nodeEnv.HERD_MANAGER = isWildcard(config.host) ? `127.0.0.1:${port}` : address;
  await sampler.start();

  process.stdout.write(`listening ${address}\n`);
  logger.info(`herd ${VERSION} manager listening on ${address}; node command ${config.nodeCommand}; logs in ${config.logDir}`);

  installLifecycle({ logger, server, supervisor, sampler, launcher });
}

function installLifecycle(parts: { logger: Logger; server: ManagerServer; supervisor: Supervisor; sampler: Sampler; launcher: Launcher }): void {
  const { logger, server, supervisor, sampler, launcher } = parts;
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) {
      // A second signal: no more waiting on graceful exits.
      const n = launcher.killAll();
      process.stderr.write(`herd manager: ${signal} again, sent SIGKILL to ${n} node group(s), exiting now\n`);
      process.exit(1);
    }
    stopping = true;
    logger.info(`${signal}: stopping nodes, then exiting`);
    const closed = server.close();
    const killed = await supervisor.shutdown();
    await closed;
    await sampler.stop();
    logger.info(`stopped ${killed} node(s); bye`);
    await closeLogger(logger);
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  // A bug must not take every node on this host down with the daemon: log, keep serving.
  process.on('uncaughtException', (err) => logger.error(`internal error (uncaught): ${err.stack ?? err}`));
  process.on('unhandledRejection', (err) => logger.error(`internal error (unhandled rejection): ${(err as Error)?.stack ?? err}`));
}
