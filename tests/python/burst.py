"""Fifty clients of one asyncio process open at once, as the Python
`websockets` library opens them, and each echoes one message.

    python3 tests/python/burst.py --url wss://localhost:PORT/echo --ca CERT [--clients 50]

Prints `opened N of M, echoed N` and exits 0 only if every client opened
and echoed; each failure is printed with its reason. Bounded: every client
gives up after --timeout seconds.
"""

import argparse
import asyncio
import ssl
import sys

import websockets


async def client(n, url, context, timeout):
    async with asyncio.timeout(timeout):
        async with websockets.connect(url, ssl=context, open_timeout=timeout) as ws:
            text = f"client {n} of the burst"
            await ws.send(text)
            reply = await ws.recv()
            if reply != text:
                raise RuntimeError(f"echo {reply!r}, sent {text!r}")


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args()
    context = ssl.create_default_context(cafile=args.ca)
    results = await asyncio.gather(
        *(client(n, args.url, context, args.timeout) for n in range(args.clients)),
        return_exceptions=True,
    )
    failed = [(n, r) for n, r in enumerate(results) if isinstance(r, BaseException)]
    for n, error in failed:
        print(f"client {n}: {type(error).__name__}: {error}")
    ok = args.clients - len(failed)
    print(f"opened and echoed {ok} of {args.clients}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
