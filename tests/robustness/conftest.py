"""The robustness suite: hostile or broken clients, limits and faults (short mode inside
the normal test command; ``--robustness-long`` for the long mode)."""

from __future__ import annotations

import sys
from pathlib import Path

# The raw aioquic HTTP/3 peer of the interop tests is the suite's hostile client.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))
