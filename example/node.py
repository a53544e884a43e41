#!/usr/bin/env python3
"""A herd node in Python: everything a node must do, in about 20 lines.

The manager runs `<node-command> [node-args...] <interface-host:port> <machine-ip>`
with HERD_MANAGER, HERD_INDEX, HERD_GENERATION (and HERD_TOKEN) set. A node
connects to HERD_MANAGER, sends `connect` with its pid, and exits on SIGTERM.
Frames are a 4-byte big-endian length, then one MessagePack map.
Needs the msgpack package (Debian: python3-msgpack).
"""
import os, signal, socket, struct, sys, time
import msgpack

def send(sock, msg):
    body = msgpack.packb(msg)
    sock.sendall(struct.pack(">I", len(body)) + body)

def recv(sock):
    (length,) = struct.unpack(">I", sock.recv(4, socket.MSG_WAITALL))
    return msgpack.unpackb(sock.recv(length, socket.MSG_WAITALL))

interface, machine_ip = sys.argv[-2:]
host, port = os.environ["HERD_MANAGER"].rsplit(":", 1)
sock = socket.create_connection((host.strip("[]"), int(port)))
if "HERD_TOKEN" in os.environ:
    send(sock, {"id": 1, "cmd": "hello", "token": os.environ["HERD_TOKEN"]})
    recv(sock)
send(sock, {"id": 2, "cmd": "connect", "pid": os.getpid()})
reply = recv(sock)
if not reply["ok"]:
    sys.exit(f"herd refused connect: {reply['error']}")
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print(f"node {reply['index']} of generation {reply['generation']} up; interface {interface}", flush=True)

while True:  # your protocol goes here: talk to `interface`, do the work
    time.sleep(1)
