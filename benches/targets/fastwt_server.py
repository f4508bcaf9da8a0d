"""Echo server for the fastwt target (run with the Python that has fastwt installed):
``fastwt.bench.server`` (python/fastwt/bench/server.py), the one ``fastwt bench`` starts.

    python targets/fastwt_server.py [--mode bare|app|app-plain] [--seconds N] \
        [--backend rust|python]

Prints ``PORT <n>`` and ``HASH <hex>`` once listening on 127.0.0.1; the routes and
modes are described there.
"""

from __future__ import annotations

from fastwt.bench.server import main

if __name__ == "__main__":
    main()
