"""Load client for the fastwt target, with fastwt's own client: ``fastwt.bench.client``
(python/fastwt/bench/client.py), the one ``fastwt bench`` uses.

    python targets/fastwt_client.py <workload> --url https://127.0.0.1:PORT \
        --cert-hash HEX --server-pid PID [--header k=v ...]

Prints one JSON line (see fastwt/bench/workloads.py).
"""

from __future__ import annotations

import sys

from fastwt.bench.client import main

if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(1)
