"""The echo worker: every client message goes back to the connection it
came from.

    python -m averyws_worker.echo --connect tcp://127.0.0.1:7100 \\
        --service worker-echo [--key-file FILE] [--no-curve]

--connect is repeatable (one averyws process needs one: its other reactors
are found), --service too; --key-file signs and verifies every message when
the nodes have --backend-key-file, and connects with CURVE keys derived
from it (--no-curve for nodes run with --backend-no-curve). SIGINT or
SIGTERM sends BYE to every node and exits; a second one exits at once.
"""

from __future__ import annotations

from . import cli
from .protocol import RECORD
from .worker import Handler, log


class Echo(Handler):
    """Replies with what came; a batch goes back as one SENDS, as it came
    (a SENDS record has a MESSAGES record's layout)."""

    def on_message(self, worker, node, conn, payload):
        if len(raw(payload)) > worker.nodes[node].info["max_payload"]:
            log.warning("%s: %d-byte message over max_payload, not echoed",
                        worker.endpoint(node), len(payload))
            return
        worker.send(node, [conn], payload)

    def on_batch(self, worker, node, batch):
        limit = worker.nodes[node].info["max_payload"]
        frame = batch["frame"]
        if any(len(data) > limit for _, _, data in batch["records"]):
            log.warning("%s: a message over max_payload, not echoed", worker.endpoint(node))
            frame = b"".join(RECORD.pack(conn, kind, len(data)) + data
                             for conn, kind, data in batch["records"] if len(data) <= limit)
        if frame:
            worker.send_raw_batch(node, frame)


def raw(payload: str | bytes) -> bytes:
    return payload.encode() if isinstance(payload, str) else payload


def main(argv: list[str] | None = None) -> None:
    cli.run(__doc__, "py-echo", "worker-echo", Echo(), argv)


if __name__ == "__main__":
    main()
