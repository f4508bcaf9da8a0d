"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from process_support import CliProcess


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each ``@pytest.mark.anyio`` test once on asyncio and once on trio."""
    return str(request.param)


@pytest.fixture
def fastwt_cli() -> Iterator[Callable[..., CliProcess]]:
    """Start ``python -m fastwt ...`` processes; any still running at teardown are
    stopped."""
    started: list[CliProcess] = []

    def start(*args: str) -> CliProcess:
        process = CliProcess(*args)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait()
