// `herd manager`: wires config, logger, launcher, supervisor, sampler and server
// together, prints `listening host:port`, and owns the daemon's lifecycle.

import { mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Chaos } from './chaos';
import { ConfigError, MANAGER_NODE_FLAGS, MANAGER_USAGE, parseManagerArgs } from './config';
import { Containment } from './containment';
import { Dashboard } from './dashboard';
import { Launcher } from './launcher';
import { createSpawner } from './spawner';
import { FD_RESERVE, FDS_PER_NODE, nodesForNofile } from './limits';
import { claimLogDir } from './logdir';
import { closeLogger, createLogger, Logger, reopenLogFiles } from './logger';
import { NodeOutput } from './nodeoutput';
import { VERSION } from './package';
import type { ManagerIdentity } from './protocol';
import { Sampler } from './sampler';
import { formatAddress, isWildcard, ManagerServer } from './server';
import { Supervisor } from './supervisor';
import { Timeline } from './timeline';

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
  for (const warning of config.warnings) logger.warn(warning);
  let containment: Containment | null = null;
  const fatal = async (message: string) => {
    containment?.close();
    logger.error(message);
    await closeLogger(logger);
    process.exit(1);
  };

  const { limits } = config;
  if (config.maxNodes > limits.maxNodes) {
    logger.warn(`--max-nodes ${config.maxNodes} is more than this host's limits allow (${limits.maxNodes}, bound by ${limits.binding}); nodes beyond that will fail to start`);
  }
  try {
    // Reaps what a crashed predecessor left behind before anything else starts.
    containment = new Containment({
      stateDir: config.stateDir,
      logger,
      cgroup: process.env.HERD_CGROUP !== 'off',
      watchdog: path.join(__dirname, 'watchdog.js'),
      watchdogLog: path.join(config.logDir, 'watchdog.log'),
    });
  } catch (err) {
    return fatal(`cannot keep the run's state in --state-dir ${config.stateDir}: ${(err as Error).message}; choose a writable directory with --state-dir or HERD_STATE_DIR`);
  }

  let spawning: ReturnType<typeof createSpawner>;
  try {
    spawning = createSpawner(process.env.HERD_SPAWN);
  } catch (err) {
    return fatal(`${(err as Error).message}; unset HERD_SPAWN to let the manager choose`);
  }
  if (spawning.note !== null && process.env.HERD_SPAWN === undefined) {
    logger.warn(`nodes will be started with child_process.spawn, which is slower than herd's native starter: ${spawning.note}; install python3, make and a C compiler and run npm run build`);
  }

  // HERD_MANAGER is filled in once the port is known, before any node can start.
  const nodeEnv: NodeJS.ProcessEnv = { ...process.env };
  if (config.token !== null) nodeEnv.HERD_TOKEN = config.token;
  const nodeOutput = new NodeOutput({ logDir: config.logDir, maxBytes: config.nodeLogMaxBytes, checkMs: config.nodeLogCheckMs, logger });
  const launcher = new Launcher({
    command: config.nodeCommand,
    args: config.nodeArgs,
    env: nodeEnv,
    output: nodeOutput,
    killGraceMs: config.killGraceMs,
    logger,
    containment,
    maxLive: nodesForNofile(limits.nofile),
    maxLiveReason: `RLIMIT_NOFILE is ${limits.nofile} (${FDS_PER_NODE} per node, ${FD_RESERVE} kept for the manager)`,
    spawner: spawning.spawner,
  });
  // Loaded only with --inspect: its WebSocket client is of no use otherwise.
  const inspector = config.inspect ? (await import('./inspect')).skyInspector(logger) : null;
  if (inspector) logger.info(`inspect: the manager's statechart will be live at ${inspector.url} once connected to Stately Sky`);
  const supervisor = new Supervisor({ launcher, containment, logger, maxQueue: MAX_QUEUE, inspect: inspector?.inspect });
  const sampler = new Sampler({
    intervalMs: config.statsIntervalMs,
    logFile: path.join(config.logDir, 'stats.jsonl'),
    nodes: () => supervisor.liveNodes(),
    nodesCpuUsec: () => containment.nodesCpuUsec(),
    logger,
  });
  const identity = { version: VERSION, hostname: os.hostname(), pid: process.pid };
  const timeline = new Timeline({
    logDir: config.logDir,
    logger,
    manager: (): ManagerIdentity => ({ ...identity, address: server.address }),
    intervalMs: config.statsIntervalMs,
    current: () => supervisor.generation(),
  });
  sampler.on('sample', (event, mono) => timeline.sample(event, mono));
  supervisor.on('phase', (view, from) => timeline.phase(view, from));
  supervisor.on('event', (event) => event.event === 'ready' && timeline.ready(event));
  const chaos = new Chaos(supervisor, logger);
  chaos.on('action', (action) => timeline.chaos(action));
  const server = new ManagerServer({
    host: config.host,
    port: config.port,
    maxFrame: config.maxFrame,
    maxNodes: config.maxNodes,
    interfacePort: config.interfacePort,
    token: config.token,
    identity,
    supervisor,
    sampler,
    nodeOutput,
    timeline,
    chaos,
    logger,
    // Every node may hold a connection of its own, beside the controllers.
    maxConnections: config.maxNodes + 1024,
    authTimeoutMs: config.authTimeoutMs,
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
  // Once listening: a manager that cannot start does not take the directory over.
  const sharing = claimLogDir(config.logDir);
  if (sharing !== null) {
    logger.warn(`--log-dir ${config.logDir} is also the log directory of the herd manager pid ${sharing}, which is running: the two write over each other's node output and timelines; stop one, or give each its own --log-dir`);
  }
  const port = Number(address.slice(address.lastIndexOf(':') + 1));
  nodeEnv.HERD_MANAGER = isWildcard(config.host) ? `127.0.0.1:${port}` : address;
  await sampler.start();
  if (config.dashboard) {
    const dashboard = new Dashboard({ ...config.dashboard, title: address, supervisor, sampler, logger });
    try {
      logger.info(`dashboard ${await dashboard.listen()}`);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      return fatal(`cannot serve the dashboard on ${formatAddress(config.dashboard.host, config.dashboard.port)}: ${e.code ?? e.message}; choose another port with --dashboard PORT (0 picks a free one)`);
    }
  }
  nodeOutput.start();

  // Signal handlers before the `listening` line: a signal sent as soon as it is read
  // would otherwise meet the default action (SIGHUP and SIGTERM kill at once).
  installLifecycle({ logger, server, supervisor, sampler, timeline, launcher, containment, nodeOutput });
  process.stdout.write(`listening ${address}\n`);
  logger.info(`herd ${VERSION} manager pid ${process.pid} listening on ${address}; node command ${config.nodeCommand}; logs in ${config.logDir}`);
  const missing = MANAGER_NODE_FLAGS.filter((f) => !process.execArgv.includes(f));
  if (missing.length > 0) logger.info(`node runs without ${missing.join(' ')}: the manager's memory grows more with its nodes; start it with bin/herd (npx herd, node_modules/.bin/herd) or pass the flag to node`);
  logger.info(`max nodes ${config.maxNodes} (limits allow ${limits.maxNodes}, bound by ${limits.binding}); containment: ${containment.describe()}; nodes started with ${spawning.spawner.kind}${spawning.note ? ` (${spawning.note})` : ''}`);
}

function installLifecycle(parts: {
  logger: Logger;
  server: ManagerServer;
  supervisor: Supervisor;
  sampler: Sampler;
  timeline: Timeline;
  launcher: Launcher;
  containment: Containment;
  nodeOutput: NodeOutput;
}): void {
  const { logger, server, supervisor, sampler, timeline, launcher, containment, nodeOutput } = parts;
  let stopping = false;
  let forced = false;
  let logClosing = false;
  const shutdown = async (signal: string) => {
    if (stopping) {
      // A second signal: no more waiting on graceful exits. A third one does not wait for the log either.
      if (forced) process.exit(1);
      forced = true;
      const n = launcher.killAll();
      const line = `${signal} again: sent SIGKILL to ${n} node group(s); exiting now without waiting for them`;
      if (logClosing) {
        process.stderr.write(`herd manager: ${line}\n`);
      } else {
        logger.error(line);
        await closeLogger(logger, 500);
      }
      process.exit(1);
    }
    stopping = true;
    // Stop accepting first: no new client or node connection while the nodes are killed.
    logger.info(`${signal}: no longer accepting connections; stopping nodes, then exiting`);
    let code = 0;
    try {
      const closed = server.close();
      const killed = await supervisor.shutdown();
      await closed;
      await sampler.stop();
      await timeline.close();
      await nodeOutput.stop();
      // A second signal took over (and its SIGKILLs are why the nodes are gone): it exits, with status 1.
      if (forced) return;
      // Everything is reaped: the state file and cgroups go, the watchdog has nothing to do.
      containment.close();
      logger.info(`stopped ${killed} node(s); bye`);
    } catch (err) {
      if (forced) return;
      code = 1;
      const n = launcher.killAll();
      logger.error(`shutdown failed: ${(err as Error)?.stack ?? err}; sent SIGKILL to ${n} node group(s); bye`);
    }
    logClosing = true;
    await closeLogger(logger);
    process.exit(code);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  // logrotate's move-then-HUP: manager.log is reopened (a new file on the same path),
  // stats.jsonl is opened per line and follows by itself; a deleted log directory is re-created.
  process.on('SIGHUP', () => {
    if (stopping) return; // the logs are being closed anyway
    logger.info('SIGHUP: reopening manager.log and stats.jsonl');
    const reopened = reopenLogFiles(logger);
    sampler.reopen();
    timeline.reopen();
    // On failure reopenLogFiles has logged the error and keeps retrying.
    if (reopened?.ok) logger.info(`SIGHUP: reopened ${reopened.file}; stats.jsonl continues in the same directory`);
  });
  // A bug must not take every node on this host down with the daemon: log, keep serving.
  process.on('uncaughtException', (err) => logger.error(`internal error (uncaught): ${err.stack ?? err}`));
  process.on('unhandledRejection', (err) => logger.error(`internal error (unhandled rejection): ${(err as Error)?.stack ?? err}`));
}
