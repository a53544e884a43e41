#!/usr/bin/env node
// The example node, and the reference for writing nodes in any language.
//
// A node is started by the manager as
//     <node-command> [node-args...] <interface-host:port> <machine-ip>
// with HERD_MANAGER (host:port), HERD_INDEX, HERD_GENERATION and, when the
// manager requires one, HERD_TOKEN in its environment. All it must do is open a
// TCP connection to HERD_MANAGER and send, as length-prefixed MessagePack,
//     { id: 1, cmd: "hello", token }       (only if HERD_TOKEN is set)
//     { id: 2, cmd: "connect", pid }       (its own pid)
// The reply to connect moves it from "spawning" to "running". It must exit on
// SIGTERM (the manager sends SIGKILL to its process group after the grace period).
//
// This one then does a small, real workload — hashing a chain of SHA-256 digests
// for a few ms every 200 ms, a visible but modest CPU load — and prints a line
// every 10 s to stdout (the manager writes it to the node's log file). It exits
// when the manager's connection closes, so a vanished manager leaves no node.

import { createHash } from 'node:crypto';
import net from 'node:net';
import { encodeFrame, decodeBody, FrameDecoder } from '../src/codec';

const [iface, machineIp] = process.argv.slice(-2);
const manager = process.env.HERD_MANAGER;
const index = process.env.HERD_INDEX ?? '?';
const log = (msg: string) => process.stdout.write(`${new Date().toISOString()} node ${index} pid ${process.pid}: ${msg}\n`);

if (!manager) {
  process.stderr.write('HERD_MANAGER is not set: this program is meant to be started by `herd manager`\n');
  process.exit(2);
}

const sep = manager.lastIndexOf(':');
const socket = net.connect({ host: manager.slice(0, sep).replace(/^\[|\]$/g, ''), port: Number(manager.slice(sep + 1)) });
const decoder = new FrameDecoder(1024 * 1024);
let digest = Buffer.alloc(32);
let rounds = 0;
let timer: NodeJS.Timeout | undefined;

socket.on('connect', () => {
  if (process.env.HERD_TOKEN) socket.write(encodeFrame({ id: 1, cmd: 'hello', token: process.env.HERD_TOKEN, client: 'herd-example-node' }));
  socket.write(encodeFrame({ id: 2, cmd: 'connect', pid: process.pid }));
});

socket.on('data', (chunk) => {
  for (const frame of decoder.push(chunk)) {
    if (frame.kind !== 'frame') continue;
    const reply = decodeBody(frame.body) as { id: number; ok: boolean; index?: number; generation?: number; error?: { code: string; message: string } };
    if (!reply.ok) {
      log(`manager refused request ${reply.id}: ${reply.error?.code} ${reply.error?.message}`);
      process.exit(1);
    }
    if (reply.id === 2) {
      log(`connected as index ${reply.index} of generation ${reply.generation}; interface ${iface}, machine ${machineIp}`);
      timer = setInterval(work, 200);
    }
  }
});

function work(): void {
  const until = Date.now() + 5;
  while (Date.now() < until) digest = createHash('sha256').update(digest).digest();
  if (++rounds % 50 === 0) log(`alive; digest ${digest.toString('hex').slice(0, 16)}`);
}

socket.on('error', (err) => log(`manager connection: ${err.message}`));
socket.on('close', () => {
  log('manager connection closed; exiting');
  process.exit(0);
});

process.on('SIGTERM', () => {
  clearInterval(timer);
  log('SIGTERM; exiting');
  process.exit(0);
});
