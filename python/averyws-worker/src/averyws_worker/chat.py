"""The chat worker: one channel per room, as examples/chat_worker.rs.

    python -m averyws_worker.chat --connect tcp://127.0.0.1:7100 \\
        --service chat [--key-file FILE] [--no-curve]

A client joins the room its query names, `wss://host/chat?room=NAME`
(default `lobby`): the worker subscribes it to channel `rooms/NAME`. What
it sends is published there on every node, leaving the sender out, and
each copy names the sender's user and roles so every node checks that the
sender may `publish` (docs/protocol.md section 13).
"""

from __future__ import annotations

from urllib.parse import parse_qs

from . import cli
from .worker import Connection, Handler, log

DEFAULT_ROOM = "lobby"
CHANNEL_PREFIX = "rooms/"
MAX_MEMBERS = 1 << 20
FORBIDDEN, NO_SUCH_CONNECTION = 5, 4


class Chat(Handler):
    def __init__(self):
        self.members: dict[tuple[int, int], tuple[str, Connection]] = {}

    def on_connect(self, worker, node, conn):
        room = parse_qs(conn.query).get("room", [DEFAULT_ROOM])[0] or DEFAULT_ROOM
        channel = CHANNEL_PREFIX + room
        if len(channel.encode()) > 256:
            return worker.close(node, conn.conn, 1008, "invalid room name")
        if len(self.members) >= MAX_MEMBERS:
            return worker.close(node, conn.conn, 1013, "too many members")
        worker.subscribe(node, conn.conn, channel)
        log.info("%s: %d (%s) joins %s", worker.endpoint(node), conn.conn, conn.peer, channel)
        self.members[(node, conn.conn)] = (channel, conn)

    def on_message(self, worker, node, conn, payload):
        member = self.members.get((node, conn))
        if member is None:
            return
        channel, connect = member
        worker.publish(channel, payload, origin=(node, conn),
                       author=(connect.user, connect.roles))

    def on_disconnect(self, worker, node, conn, code, reason):
        self.members.pop((node, conn), None)

    def on_error(self, worker, node, error):
        if error["code"] in (FORBIDDEN, NO_SUCH_CONNECTION):
            for conn in error["conns"]:
                self.members.pop((node, conn), None)
        super().on_error(worker, node, error)

    def on_node_reset(self, worker, node):
        self.members = {key: value for key, value in self.members.items() if key[0] != node}


def main(argv: list[str] | None = None) -> None:
    cli.run(__doc__, "py-chat", "chat", Chat(), argv)


if __name__ == "__main__":
    main()
