#!/usr/bin/env python3
"""An averyws backend worker in Python: every client message goes back to
the connection it came from (docs/protocol.md, backend protocol v3 with
v2 and v1 fallback).

    python3 examples/python/echo_worker.py --connect tcp://127.0.0.1:7100 \\
        --service worker-echo [--key-file FILE]

The same flags as examples/echo_worker.rs: --connect is repeatable (one
DEALER per node; one endpoint of a process with several reactors is
enough, the others are found, section 14), --service too; --key-file signs and verifies every
message when the nodes have --backend-key-file, and connects with CURVE
keys derived from it (section 1; --no-curve for nodes run with
--backend-no-curve). SIGINT or SIGTERM sends BYE
to every node and exits; a second one exits at once.

It does what section 12's sketch leaves out: every node, heartbeats both
ways, node death and restart with the Paranoid Pirate backoff (1 s doubling
to 32 s), every key of the key file for verification, a replay window per
sender, and dropping (counted, logged at most once per reason and node
every 10 s) what does not check out. Each link starts in protocol version 3
(section 14: WELCOME names the node's sibling reactors, linked to as well;
section 13: a batch of client messages in one MESSAGES, echoed as one
SENDS) and falls back to the highest older version the node lists when it
answers READY with ERROR UNSUPPORTED_VERSION. Python 3.11; pyzmq is the only package beyond the
standard library (pip install pyzmq).
"""

import argparse
import hashlib
import hmac
import logging
import os
import re
import signal
import socket
import struct
import sys
import time

import zmq
from zmq.utils import z85

V1, V2, V3 = 1, 2, 3
FLAG_SIGNED = 0x01
HEARTBEAT, BYE, READY, WELCOME, ERROR = 0x01, 0x02, 0x10, 0x11, 0x12
CONNECT, MESSAGE, DISCONNECT, MESSAGES, SEND, SENDS = 0x20, 0x21, 0x22, 0x24, 0x30, 0x36
FROM_NODE = {V1: {HEARTBEAT, BYE, WELCOME, ERROR, CONNECT, MESSAGE, DISCONNECT}}
FROM_NODE[V2] = FROM_NODE[V1] | {MESSAGES}
FROM_NODE[V3] = FROM_NODE[V2]
UNSUPPORTED_VERSION, UNKNOWN_PEER, RESERVED_SERVICE = 1, 2, 3
TEXT, BINARY = 1, 2
RECORD = struct.Struct(">QBI")  # section 13: conn, kind, length, then the payload

DEFAULT_ENDPOINT = "tcp://127.0.0.1:7100"
DEFAULT_SERVICE = "worker-echo"
MAX_FRAMES = 106              # the largest v1 message, signature included
MAX_FRAME_BYTES = 64 << 20    # ZMQ_MAXMSGSIZE: larger frames disconnect
NAME = re.compile(rb"[A-Za-z0-9._-]{1,64}\Z")
KEY_ID = re.compile(rb"[A-Za-z0-9._-]{1,32}\Z")
MIN_SECRET = 16
CURVE_SERVER_KEY = b"zaOB5mk3GkBEu@D([#AIs@wZwmofUBJNQG]4m!Uy"  # section 1, public
CURVE_CLIENT_LABEL = b"averyws backend CURVE client key 1"
MAC_LEN = 32
SKEW_MS = 30_000              # |timestamp - now| bound (section 9)
WINDOW = 64                   # replay window, in sequence numbers
MAX_PEERS = 4096              # replay windows kept
DEFAULT_HEARTBEAT = 1.0       # seconds, until WELCOME says otherwise
DEFAULT_LIVENESS = 3
MIN_HEARTBEAT = 0.01
RECONNECT_INITIAL, RECONNECT_MAX = 1.0, 32.0
SEND_TIMEOUT_MS = 1000        # a full pipe to a node (section 7)
BYE_LINGER_MS = 1000          # let BYE leave before the socket closes
LOG_EVERY = 10.0
RECV_BUDGET = 256             # messages per socket per loop turn
MAX_NODES = 256               # configured and sibling nodes together (section 14)

log = logging.getLogger("echo_worker")


class Drop(Exception):
    """A received message fails a check: count it, log it, drop it."""


def now_ms():
    return time.time_ns() // 1_000_000


def mac(secret, frames):
    """HMAC-SHA256 over the frames, each preceded by its u32 length."""
    digest = hmac.new(secret, digestmod=hashlib.sha256)
    for frame in frames:
        digest.update(struct.pack(">I", len(frame)))
        digest.update(frame)
    return digest.digest()


class KeyRing:
    """A key file: one KEYID:SECRET per line, '#' comments and blank lines
    skipped. The first key signs; every key verifies."""

    def __init__(self, text):
        self.keys = {}
        for number, line in enumerate(text.split(b"\n"), 1):
            line = line.strip()
            if not line or line.startswith(b"#"):
                continue
            key_id, colon, secret = line.partition(b":")
            secret = secret.strip()
            if not colon:
                raise ValueError(f"line {number}: expected KEYID:SECRET")
            if not KEY_ID.match(key_id):
                raise ValueError(f"line {number}: key id must be 1-32 bytes of A-Z a-z 0-9 . _ -")
            if len(secret) < MIN_SECRET:
                raise ValueError(f"line {number}: secret shorter than {MIN_SECRET} bytes")
            if key_id in self.keys:
                raise ValueError(f"line {number}: duplicate key id")
            self.keys[key_id] = secret
        if not self.keys:
            raise ValueError("no KEYID:SECRET line")
        self.signing_id = next(iter(self.keys))

    def curve_client(self):
        """The signing key's CURVE client keypair, Z85 (section 1)."""
        secret = hmac.new(self.keys[self.signing_id], CURVE_CLIENT_LABEL, hashlib.sha256).digest()
        secret = z85.encode(secret)
        return zmq.curve_public(secret), secret


class ReplayTable:
    """Per sender, the highest sequence accepted and a bitmap of the 64
    below it (section 9). Bounded: a full table forgets windows idle for
    twice the skew bound first, then the least recently used one."""

    def __init__(self):
        self.peers = {}  # sender -> [highest, seen bitmap, last_ms]

    def accept(self, sender, sequence, now):
        peer = self.peers.get(sender)
        if peer is None:
            if len(self.peers) >= MAX_PEERS:
                self.make_room(now)
            peer = self.peers[sender] = [0, 0, now]
        highest, seen, _ = peer
        if sequence > highest:
            shift = sequence - highest
            seen = ((seen << shift) if shift < WINDOW else 0) | 1
            seen &= (1 << WINDOW) - 1
            peer[0], peer[1] = sequence, seen
        else:
            behind = highest - sequence
            if sequence == 0 or behind >= WINDOW or seen & (1 << behind):
                return False
            peer[1] = seen | (1 << behind)
        peer[2] = max(peer[2], now)
        return True

    def make_room(self, now):
        keep = 2 * SKEW_MS
        self.peers = {s: p for s, p in self.peers.items() if now - p[2] <= keep}
        if len(self.peers) >= MAX_PEERS:
            del self.peers[min(self.peers, key=lambda s: self.peers[s][2])]


class Node:
    """One node: its DEALER, what its WELCOME said, and the timers."""

    def __init__(self, index, endpoint):
        self.index = index
        self.endpoint = endpoint
        self.sock = None
        self.info = None          # WELCOME: boot, heartbeat, liveness, max_payload, name
        self.version = V3         # until the node says it speaks only older ones
        self.heard = self.sent = time.monotonic()
        self.backoff = RECONNECT_INITIAL
        self.retry_at = 0.0

    def interval(self):
        return self.info["heartbeat"] if self.info else DEFAULT_HEARTBEAT

    def liveness(self):
        return self.info["liveness"] if self.info else DEFAULT_LIVENESS


class Worker:
    def __init__(self, endpoints, services, keys, name, curve=True):
        self.ctx = zmq.Context()
        self.services = [service.encode() for service in services]
        self.name = name.encode()[:64].decode(errors="ignore").encode()
        self.keys = keys
        self.curve = keys.curve_client() if keys and curve else None
        self.instance = 0
        while self.instance == 0:
            self.instance = int.from_bytes(os.urandom(8), "big")
        self.sequence = 0
        self.replay = ReplayTable()
        self.drops = {}           # (node, reason) -> [unlogged, last logged]
        self.nodes = [Node(index, endpoint) for index, endpoint in enumerate(endpoints)]
        for node in self.nodes:
            self.open(node)
        log.info("worker %016x (%s) serving %s on %d node(s)%s", self.instance, name,
                 services, len(self.nodes), ", signed" if keys else "")

    # --- sending ---

    def open(self, node):
        sock = self.ctx.socket(zmq.DEALER)
        sock.linger = 0            # section 1: drop what a dead node never reads
        sock.ipv6 = True           # section 1: IPv6 endpoints need it
        sock.sndtimeo = SEND_TIMEOUT_MS
        sock.maxmsgsize = MAX_FRAME_BYTES
        if self.curve:             # section 1: a signed link is CURVE
            sock.curve_serverkey = CURVE_SERVER_KEY
            sock.curve_publickey, sock.curve_secretkey = self.curve
        sock.connect(node.endpoint)
        node.sock, node.info, node.version = sock, None, V3
        node.heard = node.sent = time.monotonic()
        self.send_ready(node)

    def send(self, node, kind, body, block=False):
        """Send one message (signed with a key file); whether it went."""
        frames = [bytes([node.version, kind, FLAG_SIGNED if self.keys else 0]), *body]
        if self.keys:
            recipient = 0 if kind == READY else node.info["boot"]
            self.sequence += 1
            key_id = self.keys.signing_id
            sig = bytes([len(key_id)]) + key_id + struct.pack(
                ">QQQQ", self.instance, recipient, self.sequence, now_ms())
            frames.append(sig + mac(self.keys.keys[key_id], frames + [sig]))
        try:
            node.sock.send_multipart(frames, flags=0 if block else zmq.DONTWAIT)
        except zmq.Again:
            log.warning("%s: pipe full, message type %#04x not sent", node.endpoint, kind)
            return False
        node.sent = time.monotonic()
        return True

    def send_ready(self, node):
        self.send(node, READY, [struct.pack(">Q", self.instance), self.name, *self.services])

    # --- receiving ---

    def recv(self, node):
        """One message's frames (at most MAX_FRAMES + 1 kept), or None."""
        try:
            frames = [node.sock.recv(zmq.DONTWAIT)]
        except zmq.Again:
            return None
        while node.sock.getsockopt(zmq.RCVMORE):
            frame = node.sock.recv()
            if len(frames) <= MAX_FRAMES:
                frames.append(frame)
        return frames

    def check(self, frames):
        """Section 9's checks in order: the body frames and the signer's id
        (None on an unsigned link). Raises Drop."""
        if len(frames) > MAX_FRAMES:
            raise Drop("too many frames")
        head = frames[0]
        if not head or head[0] not in FROM_NODE:
            raise Drop("unknown version")
        if len(head) != 3:
            raise Drop("bad header")
        if head[1] not in FROM_NODE[head[0]]:
            raise Drop("type a node may not send")
        if head[2] & ~FLAG_SIGNED:
            raise Drop("unknown flags")
        signed = bool(head[2] & FLAG_SIGNED)
        if not self.keys:
            if signed:
                raise Drop("signed on an unsigned link")
            return frames[1:], None
        if not signed:
            raise Drop("unsigned")
        sig = frames[-1]
        k = sig[0] if len(frames) > 1 and sig else 0
        if not 1 <= k <= 32 or len(sig) != 65 + k or not KEY_ID.match(sig[1:1 + k]):
            raise Drop("malformed signature frame")
        secret = self.keys.keys.get(sig[1:1 + k])
        if secret is None:
            raise Drop("unknown key id")
        if not hmac.compare_digest(mac(secret, frames[:-1] + [sig[:-MAC_LEN]]), sig[-MAC_LEN:]):
            raise Drop("bad signature")
        sender, recipient, sequence, timestamp = struct.unpack(">QQQQ", sig[1 + k:33 + k])
        # A node never sends READY; a v1-only node signs its refusal of
        # our v2 READY for recipient 0 (section 10).
        refusal = head[1] == ERROR and frames[1][:2] == struct.pack(">H", UNSUPPORTED_VERSION)
        if recipient != self.instance and not (recipient == 0 and refusal):
            raise Drop("wrong recipient")
        now = now_ms()
        if abs(timestamp - now) > SKEW_MS:
            raise Drop("stale timestamp")
        if not self.replay.accept(sender, sequence, now):
            raise Drop("replayed")
        return frames[1:-1], sender

    def handle(self, node, frames):
        body, sender = self.check(frames)
        kind = frames[0][1]
        known = node.info["boot"] if node.info else None
        parsed = decode(frames[0][0], kind, body)
        # The signature binds the message to the sender's boot.
        if sender is not None:
            if kind in (HEARTBEAT, WELCOME):
                if sender != parsed["boot"]:
                    raise Drop("signed by another boot")
            elif not (kind == ERROR and parsed["code"] == UNKNOWN_PEER):
                if known is not None and sender != known:
                    raise Drop("signed by another boot")
        node.heard, node.backoff = time.monotonic(), RECONNECT_INITIAL

        if kind == HEARTBEAT:
            if known is not None and parsed["boot"] != known:
                self.restart(node, "HEARTBEAT from a new boot")
        elif kind == BYE:
            self.lose(node, "it said BYE")
        elif kind == WELCOME:
            if known is None:
                log.info("%s: registered with node %r (boot %016x, heartbeat %d ms, liveness %d, "
                         "max payload %d)", node.endpoint, parsed["name"], parsed["boot"],
                         parsed["heartbeat"] * 1000, parsed["liveness"], parsed["max_payload"])
            elif known != parsed["boot"]:
                self.restart(node, "WELCOME from a new boot")
            node.info = parsed
            # Section 4: a signed node registers us once we sign for its boot.
            self.send(node, HEARTBEAT, [struct.pack(">Q", self.instance)])
            self.add_siblings(node, *parsed["reactors"])
        elif kind == ERROR and parsed["code"] == UNSUPPORTED_VERSION and known is None:
            spoken = [int(v) for v in parsed["detail"].split() if v.isdigit()]
            older = [v for v in spoken if V1 <= v < node.version]
            if older:
                node.version = max(older)
                log.info("%s: node speaks protocol %s: using %d", node.endpoint,
                         parsed["detail"], node.version)
                self.send_ready(node)
        elif kind == ERROR and parsed["code"] == UNKNOWN_PEER:
            if known is not None:         # else the READY keepalive is coming
                self.restart(node, "ERROR UNKNOWN_PEER")
        elif kind == ERROR:
            level = logging.ERROR if parsed["code"] == RESERVED_SERVICE else logging.WARNING
            log.log(level, "%s: ERROR %d about %#04x: %s %s", node.endpoint, parsed["code"],
                    parsed["about"], parsed["detail"], parsed["conns"] or "")
        elif known is None:
            raise Drop("event before WELCOME")
        elif kind == CONNECT:
            log.info("%s: connection %d from %s on %s%s", node.endpoint, parsed["conn"],
                     parsed["peer"], parsed["path"],
                     " (reassigned)" if parsed["reassigned"] else "")
        elif kind == DISCONNECT:
            log.info("%s: connection %d closed (%d %r)", node.endpoint, parsed["conn"],
                     parsed["code"], parsed["reason"])
        elif kind == MESSAGE:
            self.echo(node, parsed)
        elif kind == MESSAGES:
            self.echo_batch(node, parsed)

    def echo_batch(self, node, batch):
        """A SENDS record has a MESSAGES record's layout: the batch goes back
        as it came, less any record over max_payload."""
        limit = node.info["max_payload"]
        frame = batch["frame"]
        if any(len(payload) > limit for _, _, payload in batch["records"]):
            log.warning("%s: a message over max_payload, not echoed", node.endpoint)
            frame = b"".join(RECORD.pack(conn, kind, len(payload)) + payload
                             for conn, kind, payload in batch["records"]
                             if len(payload) <= limit)
        if frame:
            self.send(node, SENDS, [frame], block=True)

    def echo(self, node, message):
        payload = message["payload"]
        if len(payload) > node.info["max_payload"]:
            log.warning("%s: %d-byte message over max_payload, not echoed",
                        node.endpoint, len(payload))
            return
        meta = bytes([message["kind"]])
        self.send(node, SEND, [meta, struct.pack(">Q", message["conn"]), payload], block=True)

    def dropped(self, node, reason):
        entry = self.drops.setdefault((node.index, reason), [0, None])
        entry[0] += 1
        now = time.monotonic()
        if entry[1] is None or now - entry[1] >= LOG_EVERY:
            log.warning("%s: dropped %d message(s): %s", node.endpoint, entry[0], reason)
            entry[0], entry[1] = 0, now

    # --- node state ---

    def add_siblings(self, node, reactor, reactors):
        """Section 14: link to every other reactor of node's process that
        no node of this worker is linked to yet."""
        for other in range(reactors):
            if other == reactor:
                continue
            endpoint = sibling(node.endpoint, reactor, other)
            if endpoint is None:
                log.warning("%s: cannot derive the endpoint of reactor %d of %d: give it "
                            "with --connect", node.endpoint, other, reactors)
            elif all(known.endpoint != endpoint for known in self.nodes):
                if len(self.nodes) >= MAX_NODES:
                    log.warning("%s: not linked: %d nodes is the most", endpoint, MAX_NODES)
                    return
                log.info("%s: linking to sibling reactor %s", node.endpoint, endpoint)
                self.nodes.append(Node(len(self.nodes), endpoint))
                self.open(self.nodes[-1])

    def restart(self, node, why):
        """The node restarted or forgot this worker: drop its connections'
        state (an echo worker keeps none) and register again."""
        log.info("%s: %s: registering again", node.endpoint, why)
        node.info = None
        self.send_ready(node)

    def lose(self, node, why):
        """The node is dead: close the DEALER, reconnect after the backoff."""
        log.warning("%s: node dead (%s); reconnecting in %.0f s", node.endpoint, why, node.backoff)
        node.sock.close()
        node.sock, node.info = None, None
        node.retry_at = time.monotonic() + node.backoff
        node.backoff = min(node.backoff * 2, RECONNECT_MAX)

    def tick(self):
        now = time.monotonic()
        for node in self.nodes:
            if node.sock is None:
                if now >= node.retry_at:
                    log.info("%s: reconnecting", node.endpoint)
                    self.open(node)
            elif now - node.heard > node.interval() * node.liveness():
                self.lose(node, f"silent for {now - node.heard:.1f} s")
            elif now - node.sent >= node.interval():
                node.sent = now  # an attempt, even if the pipe is full
                if node.info:
                    self.send(node, HEARTBEAT, [struct.pack(">Q", self.instance)])
                else:
                    self.send_ready(node)

    def next_deadline(self):
        deadlines = []
        for node in self.nodes:
            if node.sock is None:
                deadlines.append(node.retry_at)
            else:
                deadlines.append(node.heard + node.interval() * node.liveness() + 0.001)
                deadlines.append(node.sent + node.interval())
        return min(deadlines)

    def run(self, stopping):
        while not stopping():
            self.tick()
            timeout = max(0.0, min(self.next_deadline() - time.monotonic(), 0.25))
            poller = zmq.Poller()
            live = [node for node in self.nodes if node.sock is not None]
            for node in live:
                poller.register(node.sock, zmq.POLLIN)
            if not live:
                time.sleep(timeout)
                continue
            ready = dict(poller.poll(int(timeout * 1000) + 1))
            for node in live:
                for _ in range(RECV_BUDGET):
                    if node.sock is None or node.sock not in ready:
                        break
                    frames = self.recv(node)
                    if frames is None:
                        break
                    try:
                        self.handle(node, frames)
                    except Drop as why:
                        self.dropped(node, str(why))

    def bye(self):
        for node in self.nodes:
            if node.sock is None:
                continue
            if node.info:
                self.send(node, BYE, [])
                node.sock.linger = BYE_LINGER_MS  # linger 0 would drop the BYE
            node.sock.close()
        self.ctx.term()
        log.info("worker %016x left", self.instance)


def sibling(endpoint, reactor, other):
    """The endpoint of reactor `other` of the process in which reactor
    `reactor` binds `endpoint` (sections 1 and 14), or None."""
    if endpoint.startswith("ipc://"):
        suffix = f".{reactor}"
        if reactor and not endpoint.endswith(suffix):
            return None
        base = endpoint[:-len(suffix)] if reactor else endpoint
        return f"{base}.{other}" if other else base
    host, colon, port = endpoint.partition("tcp://")[2].rpartition(":")
    if not endpoint.startswith("tcp://") or not colon or not port.isdigit():
        return None
    base = int(port) - reactor
    if not 0 < int(port) <= 65535 or base < 1 or base + other > 65535:
        return None
    return f"tcp://{host}:{base + other}"


def decode(version, kind, body):
    """The fields of a node's message; raises Drop when it is malformed."""

    def need(ok, what="wrong frames"):
        if not ok:
            raise Drop(f"malformed: {what}")

    def text(frame, low, high, what):
        need(low <= len(frame) <= high, what)
        try:
            return frame.decode()
        except UnicodeDecodeError:
            raise Drop(f"malformed: {what} not UTF-8") from None

    if kind == HEARTBEAT:
        need(len(body) == 1 and len(body[0]) == 8)
        return {"boot": struct.unpack(">Q", body[0])[0]}
    if kind == BYE:
        need(not body)
        return {}
    if kind == WELCOME:
        need(len(body) == 2 and len(body[0]) == (21 if version >= V3 else 17))
        boot, heartbeat_ms, max_payload, liveness = struct.unpack_from(">QIIB", body[0])
        reactors = struct.unpack_from(">HH", body[0], 17) if version >= V3 else (0, 1)
        need(reactors[0] < reactors[1], "reactor index past the count")
        return {"boot": boot, "heartbeat": max(heartbeat_ms / 1000, MIN_HEARTBEAT),
                "liveness": max(liveness, 1), "max_payload": max_payload,
                "name": text(body[1], 1, 64, "node name"), "reactors": reactors}
    if kind == ERROR:
        need(len(body) == 3 and len(body[0]) == 3)
        code, about = struct.unpack(">HB", body[0])
        need(len(body[2]) % 8 == 0 and len(body[2]) <= 8 * 1024, "connection ids")
        conns = [struct.unpack_from(">Q", body[2], at)[0] for at in range(0, len(body[2]), 8)]
        need(all(conns), "connection id 0")
        return {"code": code, "about": about, "detail": text(body[1], 0, 256, "detail"),
                "conns": conns}
    if kind == CONNECT:
        need(len(body) >= 8 and len(body[0]) == 11)
        conn, flags, roles, headers = struct.unpack(">QBBB", body[0])
        need(conn != 0 and flags & ~1 == 0 and roles <= 32 and headers <= 32, "CONNECT meta")
        need(len(body) == 8 + roles + 2 * headers)
        return {"conn": conn, "reassigned": bool(flags & 1),
                "peer": text(body[3], 0, 64, "peer"), "path": text(body[4], 1, 8192, "path")}
    if kind == MESSAGE:
        need(len(body) == 2 and len(body[0]) == 9)
        conn, payload_kind = struct.unpack(">QB", body[0])
        need(conn != 0 and payload_kind in (TEXT, BINARY), "MESSAGE meta")
        if payload_kind == TEXT:
            text(body[1], 0, len(body[1]), "text payload")
        return {"conn": conn, "kind": payload_kind, "payload": body[1]}
    if kind == MESSAGES:
        need(len(body) == 1 and 1 <= len(body[0]) <= 65536, "records frame")
        frame, records, at = body[0], [], 0
        while at < len(frame):
            need(len(frame) - at >= RECORD.size, "record cut short")
            conn, payload_kind, length = RECORD.unpack_from(frame, at)
            at += RECORD.size
            need(conn != 0 and payload_kind in (TEXT, BINARY), "record meta")
            need(length <= len(frame) - at, "record cut short")
            payload = frame[at:at + length]
            at += length
            if payload_kind == TEXT:
                text(payload, 0, length, "text payload")
            records.append((conn, payload_kind, payload))
        return {"frame": frame, "records": records}
    if kind == DISCONNECT:
        need(len(body) == 2 and len(body[0]) == 11)
        conn, code, initiator = struct.unpack(">QHB", body[0])
        need(conn != 0 and initiator <= 2, "DISCONNECT meta")
        return {"conn": conn, "code": code, "reason": text(body[1], 0, 123, "reason")}
    raise Drop("type a node may not send")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connect", action="append", metavar="ENDPOINT",
                        help="node endpoint, one DEALER each "
                             f"(repeatable; default {DEFAULT_ENDPOINT})")
    parser.add_argument("--service", action="append", metavar="NAME",
                        help=f"service to announce (repeatable; default {DEFAULT_SERVICE})")
    parser.add_argument("--key-file", metavar="FILE",
                        help="KEYID:SECRET lines, the nodes' --backend-key-file")
    parser.add_argument("--no-curve", action="store_true",
                        help="with --key-file, connect without CURVE (nodes run with "
                             "--backend-no-curve)")
    parser.add_argument("--log-level", default="info",
                        choices=["error", "warn", "info", "debug"], help="default info")
    args = parser.parse_args()
    logging.basicConfig(stream=sys.stderr,
                        level={"warn": "WARNING"}.get(args.log_level, args.log_level.upper()),
                        format="%(asctime)s %(levelname)-5s %(name)s: %(message)s")

    endpoints = args.connect or [DEFAULT_ENDPOINT]
    services = args.service or [DEFAULT_SERVICE]
    if len(set(endpoints)) != len(endpoints):
        parser.error("a node endpoint is listed twice")
    if not 1 <= len(services) <= 32:
        parser.error("1-32 services")
    for service in services:
        if not NAME.match(service.encode()) or service == "echo":
            parser.error(f"service {service!r}: 1-64 bytes of A-Z a-z 0-9 . _ -, not 'echo'")
    keys = None
    if args.key_file:
        try:
            with open(args.key_file, "rb") as file:
                keys = KeyRing(file.read())
        except (OSError, ValueError) as why:
            parser.error(f"key file {args.key_file}: {why}")

    stop = []

    def on_signal(number, _frame):
        log.info("signal %d: sending BYE", number)
        stop.append(number)
        signal.signal(number, signal.SIG_DFL)   # a second one ends the process

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    name = f"py-echo@{socket.gethostname()}/{os.getpid()}"
    worker = Worker(endpoints, services, keys, name, curve=not args.no_curve)
    worker.run(lambda: bool(stop))
    worker.bye()


if __name__ == "__main__":
    main()
