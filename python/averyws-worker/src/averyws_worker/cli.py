"""The command line the package's workers share: the same flags as the
Rust reference workers (examples/echo_worker.rs)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from .protocol import KeyRing
from .worker import Handler, Worker, default_name, log

DEFAULT_ENDPOINT = "tcp://127.0.0.1:7100"


def run(doc: str, program: str, default_service: str, handler: Handler,
        argv: list[str] | None = None) -> None:
    """Parse the flags, serve with `handler` until SIGINT or SIGTERM, then
    say BYE to every node; a second signal ends the process at once."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--connect", action="append", metavar="ENDPOINT",
                        help="node endpoint, one DEALER each; one per averyws process "
                             f"(repeatable; default {DEFAULT_ENDPOINT})")
    parser.add_argument("--service", action="append", metavar="NAME",
                        help=f"service to announce (repeatable; default {default_service})")
    parser.add_argument("--key-file", metavar="FILE",
                        help="KEYID:SECRET lines, the nodes' --backend-key-file")
    parser.add_argument("--no-curve", action="store_true",
                        help="with --key-file, connect without CURVE (nodes run with "
                             "--backend-no-curve)")
    parser.add_argument("--log-level", default="info",
                        choices=["error", "warn", "info", "debug"], help="default info")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr,
                        level={"warn": "WARNING"}.get(args.log_level, args.log_level.upper()),
                        format="%(asctime)s %(levelname)-5s %(name)s: %(message)s")
    keys = None
    if args.key_file:
        try:
            keys = KeyRing.load(args.key_file)
        except (OSError, ValueError) as why:
            parser.error(f"key file {args.key_file}: {why}")
    try:
        worker = Worker(args.connect or [DEFAULT_ENDPOINT], args.service or [default_service],
                        keys, default_name(program), curve=not args.no_curve, handler=handler)
    except ValueError as why:
        parser.error(str(why))

    stop = []

    def on_signal(number, _frame):
        log.info("signal %d: sending BYE", number)
        stop.append(number)
        signal.signal(number, signal.SIG_DFL)   # a second one ends the process

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    worker.run(lambda: bool(stop))
    worker.bye()
