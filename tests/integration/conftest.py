"""The ``backend`` fixture: a test module that uses it runs every test once on the Rust
backend and once on the pure-Python one (``FASTWT_BACKEND`` is what the configs take by
default, so servers and clients made anywhere in the test follow it). A test marked
``@pytest.mark.rust_only("why")`` is skipped on the pure backend with that reason."""

from __future__ import annotations

import pytest

from fastwt import _backend


@pytest.fixture(params=["rust", "python"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    name = str(request.param)
    if name == "rust" and not _backend.rust_available():
        pytest.skip(f"the Rust extension is not importable: {_backend.rust_import_error()}")
    marker = request.node.get_closest_marker("rust_only")
    if name == "python" and marker is not None:
        pytest.skip(f"not on the pure-Python backend: {marker.args[0]}")
    monkeypatch.setenv("FASTWT_BACKEND", name)
    return name
