#!/usr/bin/env python3
"""A third-party herd client written from PROTOCOL.md (version 1) alone.

Usage: client.py HOST:PORT [--token-file FILE]      (HOST may be [v6-address])

Needs only the standard library and the `msgpack` package. It walks a manager
through one session -- hello, ping, generate 3 nodes and wait for them to
connect, status, four requests that must fail with specific error codes,
stats, kill one node, reset, final status -- checking every reply against the
contract. It prints ONE JSON object to stdout describing what it saw; exit 0
if every step matched, 1 otherwise, with the failing step on stderr.

It leaves no nodes behind: if a step fails after `generate`, it sends `reset`
on a fresh connection before exiting.
"""

import json
import os
import socket
import struct
import sys
import time

import msgpack

TIMEOUT_S = 30.0
MAX_REPLY_FRAME = 64 * 1024 * 1024
PROTOCOL = 1


class StepFailed(Exception):
    pass


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check(cond, what):
    if not cond:
        raise StepFailed(what)


class Connection:
    """One TCP connection: length-prefixed MessagePack frames, replies matched by id."""

    def __init__(self, host, port, timeout=TIMEOUT_S):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = bytearray()
        self.unclaimed = {}  # replies read while waiting for another id
        self.next_id = 1
        self.events = []

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send_body(self, body):
        self.sock.sendall(struct.pack(">I", len(body)) + body)

    def _read_exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise StepFailed("manager closed the connection (%d bytes of a frame pending)" % len(self.buf))
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_message(self):
        (length,) = struct.unpack(">I", self._read_exact(4))
        check(1 <= length <= MAX_REPLY_FRAME, "manager sent a frame with length %d" % length)
        body = self._read_exact(length)
        try:
            # strict_map_key: the contract says maps have string keys.
            msg = msgpack.unpackb(body, raw=False, strict_map_key=True)
        except Exception as e:  # noqa: BLE001 - any decode failure is a contract violation
            raise StepFailed("manager sent a body that is not plain MessagePack (%s): %s" % (e, body[:64].hex()))
        check(isinstance(msg, dict), "manager sent a message that is not a map: %r" % (msg,))
        return msg

    def wait_reply(self, req_id):
        """Reads until the reply carrying `req_id` arrives (None for id-less errors)."""
        if req_id in self.unclaimed:
            return self.unclaimed.pop(req_id)
        while True:
            msg = self.read_message()
            if "id" not in msg:
                if "event" in msg:
                    # Events go only to connections that subscribed; this one never does.
                    self.events.append(msg)
                    raise StepFailed("got an event on a connection that did not subscribe: %r" % (msg,))
                raise StepFailed("got a reply without an id field (must be present, nil if unknown): %r" % (msg,))
            if msg["id"] == req_id:
                return msg
            self.unclaimed[msg["id"]] = msg

    def new_id(self):
        i = self.next_id
        self.next_id += 1
        return i

    def request(self, cmd, **params):
        req_id = self.new_id()
        msg = {"id": req_id, "cmd": cmd}
        msg.update(params)
        self.send_body(msgpack.packb(msg, use_bin_type=True))
        return req_id, self.wait_reply(req_id)


def check_reply_shape(reply, req_id):
    check(isinstance(reply, dict), "reply is not a map")
    check("id" in reply and reply["id"] == req_id and is_int(req_id) == is_int(reply["id"]),
          "reply id %r does not match request id %r" % (reply.get("id"), req_id))
    check(reply.get("ok") in (True, False), "reply has no boolean ok: %r" % (reply,))
    if reply["ok"] is False:
        err = reply.get("error")
        check(isinstance(err, dict), "error reply has no error map: %r" % (reply,))
        check(isinstance(err.get("code"), str) and isinstance(err.get("message"), str),
              "error must have string code and message: %r" % (err,))


def expect_ok(reply, req_id):
    check_reply_shape(reply, req_id)
    check(reply["ok"] is True, "expected ok, got error %r" % (reply.get("error"),))
    return reply


def expect_error(reply, req_id, code):
    check_reply_shape(reply, req_id)
    check(reply["ok"] is False, "expected error %s, got ok reply %r" % (code, reply))
    got = reply["error"]["code"]
    check(got == code, "expected error %s, got %s (%s)" % (code, got, reply["error"]["message"]))
    return reply


def check_counts(counts, spawning, running, killed):
    check(isinstance(counts, dict), "counts is not a map: %r" % (counts,))
    for k in ("spawning", "running", "killed"):
        check(is_int(counts.get(k)), "counts.%s is not an integer: %r" % (k, counts))
    if spawning is not None:
        check(counts["spawning"] == spawning, "counts.spawning %r != %r" % (counts["spawning"], spawning))
    if running is not None:
        check(counts["running"] == running, "counts.running %r != %r" % (counts["running"], running))
    if killed is not None:
        check(counts["killed"] == killed, "counts.killed %r != %r" % (counts["killed"], killed))


def check_status_nodes(nodes):
    check(isinstance(nodes, list), "status nodes is not a list")
    for n in nodes:
        check(isinstance(n, dict), "status node is not a map: %r" % (n,))
        check(is_int(n.get("index")) and is_int(n.get("pid")), "node index/pid not integers: %r" % (n,))
        check(n.get("state") in ("spawning", "running", "killed"), "bad node state: %r" % (n,))
        check(is_int(n.get("startedAt")), "startedAt is not an integer (ms since epoch): %r" % (n,))
        if "connectedAt" in n:
            check(is_int(n["connectedAt"]), "connectedAt is not an integer: %r" % (n,))
        if n["state"] == "killed":
            check("exitCode" in n and (n["exitCode"] is None or is_int(n["exitCode"])), "killed node exitCode: %r" % (n,))
            check("signal" in n and (n["signal"] is None or isinstance(n["signal"], str)), "killed node signal: %r" % (n,))


def pid_alive(pid):
    """True if `pid` exists and is not a zombie (local manager only)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def parse_address(arg):
    host, sep, port = arg.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError("expected HOST:PORT, got %r" % arg)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def to_json(v):
    if isinstance(v, bytes):
        return {"bin": v.hex()}
    return repr(v)


def run(host, port, token, report):
    steps = report["steps"]
    state = {"live": False}
    current = {"step": "open-connection"}
    conn = None

    def step(name, reply, **extra):
        entry = {"step": name, "ok": True, "reply": reply}
        entry.update(extra)
        steps.append(entry)

    try:
        conn = Connection(host, port)

        # hello
        current["step"] = "hello"
        params = {"client": "herd-interop-client.py"}
        if token is not None:
            params["token"] = token
        rid, r = conn.request("hello", **params)
        expect_ok(r, rid)
        check(r.get("protocol") == PROTOCOL, "protocol %r != %d" % (r.get("protocol"), PROTOCOL))
        mgr = r.get("manager")
        check(isinstance(mgr, dict), "hello has no manager map")
        check(isinstance(mgr.get("version"), str) and isinstance(mgr.get("hostname"), str)
              and is_int(mgr.get("pid")) and isinstance(mgr.get("address"), str),
              "manager identity {version, hostname, pid, address} malformed: %r" % (mgr,))
        step("hello", r)

        # ping, with the id hand-encoded as uint64 (0xcf): msgpack-python would pack small
        # ids compactly, this proves the manager takes any integer width. The value is
        # above 2^63, so it only fits a uint64 -- and it must come back unchanged.
        current["step"] = "ping"
        wide_id = 2 ** 63 + 4242
        body = (b"\x82" + msgpack.packb("id") + b"\xcf" + struct.pack(">Q", wide_id)
                + msgpack.packb("cmd") + msgpack.packb("ping"))
        before = int(time.time() * 1000)
        conn.send_body(body)
        r = conn.wait_reply(wide_id)
        after = int(time.time() * 1000)
        expect_ok(r, wide_id)
        check(r.get("pong") is True, "pong is not true: %r" % (r,))
        check(is_int(r.get("time")), "ping time must be an integer (ms since epoch), got %s %r"
              % (type(r.get("time")).__name__, r.get("time")))
        # same host in the usual case; allow a minute of clock skew otherwise
        check(before - 60000 <= r["time"] <= after + 60000, "ping time %r far from now %d" % (r["time"], after))
        step("ping", r, requestId=str(wide_id), idEncoding="uint64 0xcf")

        # a second ping, id 7 as uint64 0xcf too (small value, wide encoding)
        current["step"] = "ping-small-uint64-id"
        body = (b"\x82" + msgpack.packb("id") + b"\xcf" + struct.pack(">Q", 7)
                + msgpack.packb("cmd") + msgpack.packb("ping"))
        conn.send_body(body)
        r = conn.wait_reply(7)
        expect_ok(r, 7)
        check(r.get("pong") is True, "pong is not true")
        step("ping-small-uint64-id", r)
        conn.next_id = 100

        # generate 3, wait until every node has connected
        current["step"] = "generate"
        state["live"] = True
        t0 = time.monotonic()
        rid, r = conn.request("generate", n=3, wait="connected", timeoutMs=20000)
        took = time.monotonic() - t0
        expect_ok(r, rid)
        generation = r.get("generation")
        check(is_int(generation) and generation >= 1, "generation %r is not a positive integer" % (generation,))
        nodes = r.get("nodes")
        check(isinstance(nodes, list) and len(nodes) == 3, "expected 3 nodes, got %r" % (nodes,))
        for n in nodes:
            check(isinstance(n, dict) and is_int(n.get("index")) and is_int(n.get("pid")) and n["pid"] > 0,
                  "node entry needs integer index and pid: %r" % (n,))
        check(sorted(n["index"] for n in nodes) == [0, 1, 2], "node indexes are not 0..2: %r" % (nodes,))
        check(len(set(n["pid"] for n in nodes)) == 3, "node pids are not distinct: %r" % (nodes,))
        pids = {n["index"]: n["pid"] for n in nodes}
        step("generate", r, seconds=round(took, 3))

        # status: 3 running
        current["step"] = "status"
        rid, r = conn.request("status")
        expect_ok(r, rid)
        check(isinstance(r.get("state"), str), "status state is not a string")
        check(r.get("generation") == generation, "status generation %r != %r" % (r.get("generation"), generation))
        check(r.get("target") == 3, "status target %r != 3" % (r.get("target"),))
        check_counts(r.get("counts"), 0, 3, 0)
        check_status_nodes(r.get("nodes"))
        check(len(r["nodes"]) == 3, "status lists %d nodes, expected 3" % len(r["nodes"]))
        for n in r["nodes"]:
            check(n["state"] == "running", "node %r is not running" % (n,))
            check(pids.get(n["index"]) == n["pid"], "status node %r does not match generate's pids %r" % (n, pids))
            check(is_int(n.get("connectedAt")), "running node has no integer connectedAt: %r" % (n,))
        step("status", r)

        # connect with a pid that is no node of ours
        current["step"] = "connect-unknown-pid"
        rid, r = conn.request("connect", pid=os.getpid())
        expect_error(r, rid, "UNKNOWN_NODE")
        step("connect-unknown-pid", r)

        # unknown command
        current["step"] = "unknown-command"
        rid, r = conn.request("frobnicate")
        expect_error(r, rid, "UNKNOWN_COMMAND")
        step("unknown-command", r)

        # generate with a bad n
        current["step"] = "generate-bad-argument"
        rid, r = conn.request("generate", n="x")
        expect_error(r, rid, "BAD_ARGUMENT")
        step("generate-bad-argument", r)

        # a body that is valid MessagePack but not a map
        current["step"] = "not-a-map"
        conn.send_body(msgpack.packb(5))
        r = conn.wait_reply(None)
        expect_error(r, None, "BAD_MESSAGE")
        check(r["id"] is None, "BAD_MESSAGE reply id must be nil")
        step("not-a-map", r)

        # stats
        current["step"] = "stats"
        rid, r = conn.request("stats")
        expect_ok(r, rid)
        hoststats = r.get("host")
        check(isinstance(hoststats, dict), "stats host is not a map")
        check(isinstance(hoststats.get("cpus"), list) and len(hoststats["cpus"]) >= 1
              and all(is_number(c) for c in hoststats["cpus"]), "host.cpus is not a list of numbers: %r" % (hoststats,))
        check(is_number(hoststats.get("load")), "host.load is not a number")
        check(is_int(hoststats.get("memUsed")) and is_int(hoststats.get("memTotal"))
              and 0 <= hoststats["memUsed"] <= hoststats["memTotal"], "host memUsed/memTotal: %r" % (hoststats,))
        check(isinstance(r.get("nodes"), list), "stats nodes is not a list")
        for n in r["nodes"]:
            check(isinstance(n, dict) and is_int(n.get("pid")) and is_int(n.get("index"))
                  and is_number(n.get("cpu")) and is_number(n.get("rss")), "stats node entry: %r" % (n,))
            check(pids.get(n["index"]) == n["pid"], "stats node %r is not a node of this generation %r" % (n, pids))
        step("stats", r)

        # kill node 0 (by index)
        current["step"] = "kill"
        rid, r = conn.request("kill", index=0)
        expect_ok(r, rid)
        check(r.get("pid") == pids[0], "kill reply pid %r != node 0 pid %r" % (r.get("pid"), pids[0]))
        check("exitCode" in r and (r["exitCode"] is None or is_int(r["exitCode"])), "kill exitCode: %r" % (r,))
        check("signal" in r and (r["signal"] is None or isinstance(r["signal"], str)), "kill signal: %r" % (r,))
        step("kill", r)

        # reset: the two remaining nodes
        current["step"] = "reset"
        rid, r = conn.request("reset")
        expect_ok(r, rid)
        check(r.get("killed") == 2, "reset killed %r, expected 2" % (r.get("killed"),))
        state["live"] = False
        step("reset", r)

        # final status: nothing live; generation unchanged (reset, failed and
        # rejected generates do not count)
        current["step"] = "final-status"
        rid, r = conn.request("status")
        expect_ok(r, rid)
        check_counts(r.get("counts"), 0, 0, None)
        check_status_nodes(r.get("nodes"))
        live = [n for n in r["nodes"] if n["state"] != "killed"]
        check(not live, "nodes still live after reset: %r" % (live,))
        check(r.get("generation") == generation,
              "generation moved from %r to %r without an accepted generate" % (generation, r.get("generation")))
        extra = {}
        if host in ("127.0.0.1", "localhost", "::1") and os.path.isdir("/proc"):
            # Replies come once nodes are reaped: their pids must be gone.
            alive = [p for p in pids.values() if pid_alive(p)]
            check(not alive, "node processes still running after reset: %r" % (alive,))
            extra["processesGone"] = True
        step("final-status", r, **extra)
        current["step"] = None
    except StepFailed as e:
        raise StepFailed("%s: %s" % (current["step"], e))
    except OSError as e:  # includes socket.timeout
        raise StepFailed("%s: socket error: %r" % (current["step"], e))
    except Exception as e:  # noqa: BLE001 - a malformed reply can trip anything above
        raise StepFailed("%s: unexpected error: %r" % (current["step"], e))
    finally:
        if conn is not None:
            conn.close()
        if state["live"]:
            report["cleanup"] = cleanup(host, port, token)


def cleanup(host, port, token):
    """Best effort: reset on a fresh connection so a failed run leaves no nodes behind."""
    try:
        c = Connection(host, port)
        try:
            if token is not None:
                c.request("hello", token=token)
            _, r = c.request("reset")
            return {"reset": r}
        finally:
            c.close()
    except Exception as e:  # noqa: BLE001
        return {"error": repr(e)}


def main(argv):
    args = argv[1:]
    token = None
    if "--token-file" in args:
        i = args.index("--token-file")
        with open(args[i + 1]) as f:
            token = f.read().strip()
        del args[i:i + 2]
    if len(args) != 1:
        sys.stderr.write(__doc__)
        return 2
    try:
        host, port = parse_address(args[0])
    except ValueError as e:
        sys.stderr.write("%s\n" % e)
        return 2
    report = {"ok": False, "manager": "%s:%d" % (host, port), "steps": []}
    code = 0
    try:
        run(host, port, token, report)
        report["ok"] = True
    except StepFailed as e:
        report["failed"] = str(e)
        sys.stderr.write("FAILED %s\n" % e)
        code = 1
    except Exception as e:  # noqa: BLE001 - report anything else as a failure too
        report["failed"] = "unexpected: %r" % (e,)
        sys.stderr.write("FAILED unexpected error: %r\n" % (e,))
        code = 1
    sys.stdout.write(json.dumps(report, default=to_json) + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
