"""Benchmarks that ship with the package: ``fastwt bench`` compares the Rust and the
pure-Python backend on the machine it runs on (``runner.py``), with the workloads
(``workloads.py``), load client (``client.py``) and echo server (``server.py``) that the
repository's suite (``benches/``) uses too. See docs/benchmarking.md."""
