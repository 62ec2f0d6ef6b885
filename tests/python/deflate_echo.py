"""The Python `websockets` library against averyws's echo with
permessage-deflate, in every window size and context takeover
combination the library can offer:

    python3 tests/python/deflate_echo.py --url wss://localhost:PORT/echo --ca CERT

For each offer it opens a connection, checks the extension the server
agreed to (RFC 7692: both no_context_takeover flags, windows within what
was offered), echoes long text, long binary and a short message, and
closes. Prints `agreed and echoed N of M offers` and exits 0 only if all
passed; each failure is printed with its offer. Bounded: every connection
gives up after --timeout seconds.
"""

import argparse
import asyncio
import itertools
import random
import ssl
import sys

import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

# None: not offered; True: client_max_window_bits without a value. The
# library cannot compress with 8 (zlib has no 256-byte raw window).
SERVER_BITS = [None, 9, 10, 12, 15]
CLIENT_BITS = [None, True, 9, 11, 15]
TAKEOVER = [False, True]

TEXT = "a chat line that repeats, with a counter: " * 50
BINARY = bytes(range(256)) * 40
# Repeats 3000 bytes apart: a server compressing with a larger window than
# it agreed to would send matches the client's window cannot reach.
FAR = random.Random(7).randbytes(3000) * 8


async def one(url, context, timeout, server_bits, client_bits, server_nct, client_nct):
    factory = ClientPerMessageDeflateFactory(
        server_no_context_takeover=server_nct,
        client_no_context_takeover=client_nct,
        server_max_window_bits=server_bits,
        client_max_window_bits=client_bits,
    )
    async with asyncio.timeout(timeout):
        async with websockets.connect(
            url, ssl=context, compression=None, extensions=[factory], open_timeout=timeout
        ) as ws:
            agreed = ws.response.headers.get("Sec-WebSocket-Extensions", "")
            params = [p.strip() for p in agreed.split(";")]
            if params[:3] != [
                "permessage-deflate",
                "server_no_context_takeover",
                "client_no_context_takeover",
            ]:
                raise RuntimeError(f"agreed {agreed!r}")
            for p in params[3:]:
                name, _, value = p.partition("=")
                limit = {"server_max_window_bits": server_bits, "client_max_window_bits": client_bits}
                offered = limit.get(name)
                if offered is None or (offered is not True and int(value) > offered):
                    raise RuntimeError(f"agreed {agreed!r} to an offer of {limit}")
            if not ws.protocol.extensions:
                raise RuntimeError("the library did not enable the extension")
            for n, message in enumerate([TEXT, BINARY, FAR, "short", TEXT + "again"]):
                await ws.send(message)
                reply = await ws.recv()
                if reply != message:
                    raise RuntimeError(f"message {n}: echo of {len(reply)} units, sent {len(message)}")


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    context = ssl.create_default_context(cafile=args.ca)
    offers = list(itertools.product(SERVER_BITS, CLIENT_BITS, TAKEOVER, TAKEOVER))
    failed = 0
    for offer in offers:
        try:
            await one(args.url, context, args.timeout, *offer)
        except Exception as error:
            failed += 1
            print(f"offer {offer}: {type(error).__name__}: {error}")
    print(f"agreed and echoed {len(offers) - failed} of {len(offers)} offers")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
