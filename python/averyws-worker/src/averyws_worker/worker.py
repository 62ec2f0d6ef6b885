"""A worker linked to every node it is given, and to their sibling
reactors: READY and WELCOME, heartbeats both ways, node death and restart
with the Paranoid Pirate backoff (1 s doubling to 32 s), signing and a
replay window per sender, and dropping (counted, logged at most once per
reason and node every 10 s) what does not check out (docs/protocol.md
sections 4, 6, 9, 10). Each link starts in protocol version 3 and falls
back to the highest older version a node lists in UNSUPPORTED_VERSION.
"""

from __future__ import annotations

import hmac
import logging
import os
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Callable

import zmq

from .protocol import (BYE, CLOSE, CONNECT, CURVE_SERVER_KEY, DISCONNECT, ERROR, FLAG_SIGNED,
                       FROM_NODE, HEARTBEAT, KEY_ID, MAC_LEN, MAX_BATCH, MAX_FRAMES, MESSAGE,
                       MESSAGES, NAME, NEWEST, PUBLISH, PUBLISH_AUTHORED, READY, RECORD,
                       RESERVED_SERVICE, SEND, SENDS, SKEW_MS, SUBSCRIBE, UNKNOWN_PEER,
                       UNSUBSCRIBE, UNSUPPORTED_VERSION, TEXT, V1, V2, WELCOME, Drop, KeyRing,
                       ReplayTable, decode, kind_of, mac, now_ms, records, sibling)

DEFAULT_HEARTBEAT = 1.0       # seconds, until WELCOME says otherwise
DEFAULT_LIVENESS = 3
RECONNECT_INITIAL, RECONNECT_MAX = 1.0, 32.0
SEND_TIMEOUT_MS = 1000        # a full pipe to a node (section 7)
BYE_LINGER_MS = 1000          # let BYE leave before the socket closes
MAX_FRAME_BYTES = 64 << 20    # ZMQ_MAXMSGSIZE: larger frames disconnect
LOG_EVERY = 10.0
RECV_BUDGET = 256             # messages per socket per loop turn
MAX_NODES = 256               # configured and sibling nodes together (section 14)

log = logging.getLogger("averyws_worker")


@dataclass
class Connection:
    """A client connection a node assigned to this worker (CONNECT)."""
    conn: int
    service: str
    peer: str
    path: str
    query: str
    subprotocol: str
    user: str
    roles: list[str]
    headers: dict[str, bytes]
    reassigned: bool


class Handler:
    """What a worker does with a node's events; override what you need.
    `node` is the index of the node (stable across reconnects); connection
    ids belong to that node."""

    def on_connect(self, worker: "Worker", node: int, conn: Connection) -> None:
        pass

    def on_message(self, worker: "Worker", node: int, conn: int, payload: str | bytes) -> None:
        pass

    def on_batch(self, worker: "Worker", node: int, batch: dict) -> None:
        """A MESSAGES batch: `batch["records"]` is [(conn, kind, bytes)],
        `batch["frame"]` the records frame as it came; by default each
        record goes to on_message in order, text as str."""
        for conn, kind, data in batch["records"]:
            self.on_message(worker, node, conn, data.decode() if kind == TEXT else data)

    def on_disconnect(self, worker: "Worker", node: int, conn: int, code: int,
                      reason: str) -> None:
        pass

    def on_error(self, worker: "Worker", node: int, error: dict) -> None:
        level = logging.ERROR if error["code"] == RESERVED_SERVICE else logging.WARNING
        log.log(level, "%s: ERROR %d about %#04x: %s %s", worker.endpoint(node), error["code"],
                error["about"], error["detail"], error["conns"] or "")

    def on_node_reset(self, worker: "Worker", node: int) -> None:
        """The node restarted, forgot this worker or died: every connection
        it had assigned is gone."""


@dataclass
class Node:
    """One node: its DEALER, what its WELCOME said, and the timers."""
    index: int
    endpoint: str
    sock: zmq.Socket | None = None
    info: dict | None = None      # WELCOME: boot, heartbeat, liveness, max_payload, name
    version: int = NEWEST         # until the node says it speaks only older ones
    heard: float = field(default_factory=time.monotonic)
    sent: float = field(default_factory=time.monotonic)
    backoff: float = RECONNECT_INITIAL
    retry_at: float = 0.0
    batch: list = field(default_factory=list)   # (conn, kind, data) waiting for SENDS
    batch_bytes: int = 0

    def interval(self) -> float:
        return self.info["heartbeat"] if self.info else DEFAULT_HEARTBEAT

    def liveness(self) -> int:
        return self.info["liveness"] if self.info else DEFAULT_LIVENESS


def default_name(program: str) -> str:
    return f"{program}@{socket.gethostname()}/{os.getpid()}"


class Worker:
    """Serves `services` for the nodes at `endpoints` (one per averyws
    process is enough: siblings are found). With `keys` every message is
    signed and verified, over CURVE unless `curve` is False."""

    def __init__(self, endpoints: list[str], services: list[str], keys: KeyRing | None = None,
                 name: str | None = None, curve: bool = True, handler: Handler | None = None):
        if not endpoints or len(set(endpoints)) != len(endpoints) or len(endpoints) > MAX_NODES:
            raise ValueError(f"1-{MAX_NODES} distinct node endpoints")
        if not 1 <= len(services) <= 32:
            raise ValueError("1-32 services")
        for service in services:
            if not NAME.match(service.encode()) or service == "echo":
                raise ValueError(f"service {service!r}: 1-64 bytes of A-Z a-z 0-9 . _ -, "
                                 "not 'echo'")
        self.ctx = zmq.Context()
        self.services = [service.encode() for service in services]
        name = name or default_name("py-worker")
        self.name = name.encode()[:64].decode(errors="ignore").encode()
        self.keys = keys
        self.curve = keys.curve_client() if keys and curve else None
        self.handler = handler or Handler()
        self.instance = 0
        while self.instance == 0:
            self.instance = int.from_bytes(os.urandom(8), "big")
        self.sequence = 0
        self.replay = ReplayTable()
        self.drops: dict = {}     # (node, reason) -> [unlogged, last logged]
        self.nodes: list[Node] = []
        for endpoint in endpoints:
            self.add_node(endpoint)
        log.info("worker %016x (%s) serving %s on %d node(s)%s", self.instance, name,
                 services, len(self.nodes), ", signed" if keys else "")

    def endpoint(self, node: int) -> str:
        return self.nodes[node].endpoint

    # --- commands ---

    def send(self, node: int, conns: list[int], payload: str | bytes) -> None:
        """One message to each of `conns` of `node`: batched into the
        turn's SENDS on a v2+ link when it goes to one connection."""
        target = self.nodes[node]
        if target.info is None:
            return
        kind, data = kind_of(payload)
        if len(data) > target.info["max_payload"]:
            raise ValueError(f"{len(data)}-byte payload over the node's max_payload")
        if target.version >= V2 and len(conns) == 1 and len(data) + RECORD.size <= MAX_BATCH:
            if target.batch_bytes + RECORD.size + len(data) > MAX_BATCH:
                self.flush(target)
            target.batch.append((conns[0], kind, data))
            target.batch_bytes += RECORD.size + len(data)
            return
        self.flush(target)
        ids = b"".join(struct.pack(">Q", conn) for conn in conns)
        self.send_to(target, SEND, [bytes([kind]), ids, data], block=True)

    def publish(self, channel: str, payload: str | bytes, origin: tuple[int, int] | None = None,
                author: tuple[str, list[str]] | None = None) -> None:
        """To every subscriber of `channel` on every node; `origin` (node,
        conn) is left out and, with `author` (user, roles, from its
        CONNECT), is who the nodes check `publish` for (section 13)."""
        kind, data = kind_of(payload)
        for target in self.nodes:
            if target.info is None:
                continue
            self.flush(target)
            skip = origin[1] if origin and origin[0] == target.index else 0
            meta = bytes([kind]) + struct.pack(">Q", skip)
            tail = []
            if target.version >= V2:
                user, roles = author if author else ("", [])
                flags = PUBLISH_AUTHORED if author else 0
                meta += bytes([flags, len(roles) if author else 0])
                if author:
                    tail = [user.encode(), *(role.encode() for role in roles)]
            self.send_to(target, PUBLISH, [meta, channel.encode(), data, *tail], block=True)

    def subscribe(self, node: int, conn: int, channel: str) -> None:
        self.command(node, SUBSCRIBE, [struct.pack(">Q", conn), channel.encode()])

    def unsubscribe(self, node: int, conn: int, channel: str) -> None:
        self.command(node, UNSUBSCRIBE, [struct.pack(">Q", conn), channel.encode()])

    def close(self, node: int, conn: int, code: int = 1000, reason: str = "") -> None:
        self.command(node, CLOSE, [struct.pack(">QH", conn, code), reason.encode()[:123]])

    def command(self, node: int, kind: int, body: list[bytes]) -> None:
        target = self.nodes[node]
        if target.info is not None:
            self.flush(target)
            self.send_to(target, kind, body, block=True)

    # --- the loop ---

    def run(self, stopping: Callable[[], bool]) -> None:
        """Serve until `stopping()` is true (checked at least every 250 ms)."""
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
            # The end of the turn: its replies go before the next wait.
            for node in self.nodes:
                self.flush(node)

    def bye(self) -> None:
        """BYE to every node, then close: the worker is leaving."""
        for node in self.nodes:
            if node.sock is None:
                continue
            if node.info:
                self.flush(node)
                self.send_to(node, BYE, [])
                node.sock.linger = BYE_LINGER_MS  # linger 0 would drop the BYE
            node.sock.close()
        self.ctx.term()
        log.info("worker %016x left", self.instance)

    # --- sending ---

    def add_node(self, endpoint: str) -> None:
        self.nodes.append(Node(len(self.nodes), endpoint))
        self.open(self.nodes[-1])

    def open(self, node: Node) -> None:
        sock = self.ctx.socket(zmq.DEALER)
        sock.linger = 0            # section 1: drop what a dead node never reads
        sock.ipv6 = True           # section 1: IPv6 endpoints need it
        sock.sndtimeo = SEND_TIMEOUT_MS
        sock.maxmsgsize = MAX_FRAME_BYTES
        if self.curve:             # section 1: a signed link is CURVE
            sock.curve_serverkey = CURVE_SERVER_KEY
            sock.curve_publickey, sock.curve_secretkey = self.curve
        sock.connect(node.endpoint)
        node.sock, node.info, node.version = sock, None, NEWEST
        node.batch, node.batch_bytes = [], 0
        node.heard = node.sent = time.monotonic()
        self.send_ready(node)

    def flush(self, node: Node) -> None:
        """The open SENDS batch to `node`, if any."""
        if node.batch:
            frame = records(node.batch)
            node.batch, node.batch_bytes = [], 0
            self.send_to(node, SENDS, [frame], block=True)

    def send_raw_batch(self, node: int, frame: bytes) -> None:
        """A records frame as it is, as one SENDS (an echo's fast path)."""
        target = self.nodes[node]
        self.flush(target)
        self.send_to(target, SENDS, [frame], block=True)

    def send_to(self, node: Node, kind: int, body: list[bytes], block: bool = False) -> bool:
        """Send one message (signed with a key file); whether it went."""
        if node.sock is None:
            return False
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

    def send_ready(self, node: Node) -> None:
        self.send_to(node, READY, [struct.pack(">Q", self.instance), self.name, *self.services])

    # --- receiving ---

    def recv(self, node: Node) -> list[bytes] | None:
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

    def check(self, frames: list[bytes]) -> tuple[list[bytes], int | None]:
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
        expected = mac(secret, frames[:-1] + [sig[:-MAC_LEN]])
        if not hmac.compare_digest(expected, sig[-MAC_LEN:]):
            raise Drop("bad signature")
        sender, recipient, sequence, timestamp = struct.unpack(">QQQQ", sig[1 + k:33 + k])
        # A node never sends READY; an older node signs its refusal of
        # our newer READY for recipient 0 (section 10).
        refusal = head[1] == ERROR and frames[1][:2] == struct.pack(">H", UNSUPPORTED_VERSION)
        if recipient != self.instance and not (recipient == 0 and refusal):
            raise Drop("wrong recipient")
        now = now_ms()
        if abs(timestamp - now) > SKEW_MS:
            raise Drop("stale timestamp")
        if not self.replay.accept(sender, sequence, now):
            raise Drop("replayed")
        return frames[1:-1], sender

    def handle(self, node: Node, frames: list[bytes]) -> None:
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
            self.send_to(node, HEARTBEAT, [struct.pack(">Q", self.instance)])
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
            self.handler.on_error(self, node.index, parsed)
        elif known is None:
            raise Drop("event before WELCOME")
        elif kind == CONNECT:
            log.info("%s: connection %d from %s on %s%s", node.endpoint, parsed["conn"],
                     parsed["peer"], parsed["path"],
                     " (reassigned)" if parsed["reassigned"] else "")
            self.handler.on_connect(self, node.index, Connection(**parsed))
        elif kind == DISCONNECT:
            log.info("%s: connection %d closed (%d %r)", node.endpoint, parsed["conn"],
                     parsed["code"], parsed["reason"])
            self.handler.on_disconnect(self, node.index, parsed["conn"], parsed["code"],
                                       parsed["reason"])
        elif kind == MESSAGE:
            self.handler.on_message(self, node.index, parsed["conn"], parsed["payload"])
        elif kind == MESSAGES:
            self.handler.on_batch(self, node.index, parsed)

    def dropped(self, node: Node, reason: str) -> None:
        entry = self.drops.setdefault((node.index, reason), [0, None])
        entry[0] += 1
        now = time.monotonic()
        if entry[1] is None or now - entry[1] >= LOG_EVERY:
            log.warning("%s: dropped %d message(s): %s", node.endpoint, entry[0], reason)
            entry[0], entry[1] = 0, now

    # --- node state ---

    def add_siblings(self, node: Node, reactor: int, reactors: int) -> None:
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
                self.add_node(endpoint)

    def restart(self, node: Node, why: str) -> None:
        """The node restarted or forgot this worker: its connections are
        gone; register again."""
        log.info("%s: %s: registering again", node.endpoint, why)
        node.info, node.batch, node.batch_bytes = None, [], 0
        self.handler.on_node_reset(self, node.index)
        self.send_ready(node)

    def lose(self, node: Node, why: str) -> None:
        """The node is dead: close the DEALER, reconnect after the backoff."""
        log.warning("%s: node dead (%s); reconnecting in %.0f s", node.endpoint, why, node.backoff)
        node.sock.close()
        was_registered = node.info is not None
        node.sock, node.info, node.batch, node.batch_bytes = None, None, [], 0
        node.retry_at = time.monotonic() + node.backoff
        node.backoff = min(node.backoff * 2, RECONNECT_MAX)
        if was_registered:
            self.handler.on_node_reset(self, node.index)

    def tick(self) -> None:
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
                    self.send_to(node, HEARTBEAT, [struct.pack(">Q", self.instance)])
                else:
                    self.send_ready(node)

    def next_deadline(self) -> float:
        deadlines = []
        for node in self.nodes:
            if node.sock is None:
                deadlines.append(node.retry_at)
            else:
                deadlines.append(node.heard + node.interval() * node.liveness() + 0.001)
                deadlines.append(node.sent + node.interval())
        return min(deadlines)
