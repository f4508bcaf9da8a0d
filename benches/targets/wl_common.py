"""The suite's workloads: ``fastwt.bench.workloads`` (python/fastwt/bench/workloads.py),
one copy for ``fastwt bench`` and ``benches/run.py``.

The reference clients (pwt_client.py) run in venvs without fastwt, so where the package
is not importable the module is loaded from the checkout by path; it imports only the
standard library. Either way this module *is* that module (``sys.modules`` maps both
names to it), so the workloads' globals (``BULK_PROGRESS``, ``CONNECT_RETRIES``) are one.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

try:
    from fastwt.bench import workloads as _workloads
except ImportError:
    _path = Path(__file__).resolve().parents[2] / "python" / "fastwt" / "bench" / "workloads.py"
    _spec = importlib.util.spec_from_file_location("fastwt_bench_workloads", _path)
    assert _spec is not None and _spec.loader is not None
    _workloads = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = _workloads
    _spec.loader.exec_module(_workloads)

sys.modules[__name__] = _workloads
