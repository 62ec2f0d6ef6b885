"""Workers for the averyws WebSocket gateway (docs/protocol.md): subclass
Handler, give it to a Worker with the node endpoints and services, call
run. See averyws_worker.echo for a complete worker."""

from .protocol import BINARY, TEXT, KeyRing
from .worker import Connection, Handler, Worker, default_name

__all__ = ["BINARY", "TEXT", "Connection", "Handler", "KeyRing", "Worker", "default_name"]
__version__ = "0.1.0"
