"""Fixtures shared by every test directory."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--robustness-long",
        action="store_true",
        default=bool(os.environ.get("FASTWT_ROBUSTNESS_LONG")),
        help="run tests/robustness in long mode (10-minute soak, bigger floods); "
        "also FASTWT_ROBUSTNESS_LONG=1",
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the figures the robustness cases recorded (tests/robustness/figures.py)."""
    from robustness_figures import FIGURES

    if not FIGURES:
        return
    terminalreporter.section("robustness figures")
    for case, figure in FIGURES:
        terminalreporter.write_line(f"{case}: {figure}")
