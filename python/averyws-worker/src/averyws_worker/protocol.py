"""The wire of docs/protocol.md without sockets: constants, signing keys,
the replay window, sibling endpoints and the decoder of what a node sends.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import struct
import time

import zmq
from zmq.utils import z85

V1, V2, V3 = 1, 2, 3
NEWEST = V3
FLAG_SIGNED = 0x01
HEARTBEAT, BYE, READY, WELCOME, ERROR = 0x01, 0x02, 0x10, 0x11, 0x12
CONNECT, MESSAGE, DISCONNECT, MESSAGES = 0x20, 0x21, 0x22, 0x24
SEND, PUBLISH, SUBSCRIBE, UNSUBSCRIBE, CLOSE, SENDS = 0x30, 0x31, 0x32, 0x33, 0x34, 0x36
FROM_NODE = {V1: {HEARTBEAT, BYE, WELCOME, ERROR, CONNECT, MESSAGE, DISCONNECT}}
FROM_NODE[V2] = FROM_NODE[V1] | {MESSAGES}
FROM_NODE[V3] = FROM_NODE[V2]
UNSUPPORTED_VERSION, UNKNOWN_PEER, RESERVED_SERVICE = 1, 2, 3
TEXT, BINARY = 1, 2
RECORD = struct.Struct(">QBI")  # section 13: conn, kind, length, then the payload
MAX_BATCH = 65536               # a records frame, at most
PUBLISH_AUTHORED = 0x01

MAX_FRAMES = 106              # the largest v1 message, signature included
NAME = re.compile(rb"[A-Za-z0-9._-]{1,64}\Z")
KEY_ID = re.compile(rb"[A-Za-z0-9._-]{1,32}\Z")
MIN_SECRET = 16
CURVE_SERVER_KEY = b"zaOB5mk3GkBEu@D([#AIs@wZwmofUBJNQG]4m!Uy"  # section 1, public
CURVE_CLIENT_LABEL = b"averyws backend CURVE client key 1"
MAC_LEN = 32
SKEW_MS = 30_000              # |timestamp - now| bound (section 9)
WINDOW = 64                   # replay window, in sequence numbers
MAX_PEERS = 4096              # replay windows kept
MIN_HEARTBEAT = 0.01


class Drop(Exception):
    """A received message fails a check: count it, log it, drop it."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def mac(secret: bytes, frames: list[bytes]) -> bytes:
    """HMAC-SHA256 over the frames, each preceded by its u32 length."""
    digest = hmac.new(secret, digestmod=hashlib.sha256)
    for frame in frames:
        digest.update(struct.pack(">I", len(frame)))
        digest.update(frame)
    return digest.digest()


class KeyRing:
    """A key file: one KEYID:SECRET per line, '#' comments and blank lines
    skipped. The first key signs; every key verifies. Secrets are the raw
    bytes after the colon (section 9)."""

    def __init__(self, text: bytes):
        self.keys: dict[bytes, bytes] = {}
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

    @classmethod
    def load(cls, path: str) -> "KeyRing":
        with open(path, "rb") as file:
            return cls(file.read())

    def curve_client(self) -> tuple[bytes, bytes]:
        """The signing key's CURVE client keypair, Z85 (section 1)."""
        secret = hmac.new(self.keys[self.signing_id], CURVE_CLIENT_LABEL, hashlib.sha256).digest()
        secret = z85.encode(secret)
        return zmq.curve_public(secret), secret


class ReplayTable:
    """Per sender, the highest sequence accepted and a bitmap of the 64
    below it (section 9). Bounded: a full table forgets windows idle for
    twice the skew bound first, then the least recently used one."""

    def __init__(self):
        self.peers: dict[int, list[int]] = {}  # sender -> [highest, seen bitmap, last_ms]

    def accept(self, sender: int, sequence: int, now: int) -> bool:
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

    def make_room(self, now: int) -> None:
        keep = 2 * SKEW_MS
        self.peers = {s: p for s, p in self.peers.items() if now - p[2] <= keep}
        if len(self.peers) >= MAX_PEERS:
            del self.peers[min(self.peers, key=lambda s: self.peers[s][2])]


def sibling(endpoint: str, reactor: int, other: int) -> str | None:
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


def kind_of(payload: str | bytes) -> tuple[int, bytes]:
    """A payload's kind byte and bytes: str is text, bytes binary."""
    if isinstance(payload, str):
        return TEXT, payload.encode()
    return BINARY, bytes(payload)


def records(batch: list[tuple[int, int, bytes]]) -> bytes:
    """A section 13 records frame of (conn, kind, data) records."""
    return b"".join(RECORD.pack(conn, kind, len(data)) + data for conn, kind, data in batch)


def decode(version: int, kind: int, body: list[bytes]) -> dict:
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

    def payload(kind_byte, data):
        return text(data, 0, len(data), "text payload") if kind_byte == TEXT else data

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
        pairs = body[8 + roles:]
        return {"conn": conn, "reassigned": bool(flags & 1),
                "service": text(body[1], 1, 64, "service"),
                "peer": text(body[3], 0, 64, "peer"), "path": text(body[4], 1, 8192, "path"),
                "query": text(body[5], 0, 8192, "query"),
                "subprotocol": text(body[6], 0, 256, "subprotocol"),
                "user": text(body[7], 0, 256, "user"),
                "roles": [text(role, 1, 64, "role") for role in body[8:8 + roles]],
                "headers": {text(pairs[i], 1, 64, "header name"): pairs[i + 1]
                            for i in range(0, len(pairs), 2)}}
    if kind == MESSAGE:
        need(len(body) == 2 and len(body[0]) == 9)
        conn, payload_kind = struct.unpack(">QB", body[0])
        need(conn != 0 and payload_kind in (TEXT, BINARY), "MESSAGE meta")
        return {"conn": conn, "kind": payload_kind, "payload": payload(payload_kind, body[1])}
    if kind == MESSAGES:
        need(len(body) == 1 and 1 <= len(body[0]) <= MAX_BATCH, "records frame")
        frame, found, at = body[0], [], 0
        while at < len(frame):
            need(len(frame) - at >= RECORD.size, "record cut short")
            conn, payload_kind, length = RECORD.unpack_from(frame, at)
            at += RECORD.size
            need(conn != 0 and payload_kind in (TEXT, BINARY), "record meta")
            need(length <= len(frame) - at, "record cut short")
            data = frame[at:at + length]
            payload(payload_kind, data)  # a text record must be UTF-8
            found.append((conn, payload_kind, data))
            at += length
        return {"frame": frame, "records": found}
    if kind == DISCONNECT:
        need(len(body) == 2 and len(body[0]) == 11)
        conn, code, initiator = struct.unpack(">QHB", body[0])
        need(conn != 0 and initiator <= 2, "DISCONNECT meta")
        return {"conn": conn, "code": code, "initiator": initiator,
                "reason": text(body[1], 0, 123, "reason")}
    raise Drop("type a node may not send")
