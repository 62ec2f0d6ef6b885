#!/usr/bin/env python3
"""The averyws-worker package's echo worker, run from a checkout without
installing the package (python/averyws-worker; installed, it is
`python -m averyws_worker.echo`, with the same flags):

    python3 examples/python/echo_worker.py --connect tcp://127.0.0.1:7100 \\
        --service worker-echo [--key-file FILE] [--no-curve]
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "python/averyws-worker/src"))

from averyws_worker.echo import main  # noqa: E402  (the path comes first)

if __name__ == "__main__":
    main()
