"""The figures the robustness cases measure (load held, faults survived, bad inputs
tried, what was lost), collected while the suite runs and printed in pytest's summary
(tests/conftest.py). docs/reliability.md lists them from a run."""

from __future__ import annotations

import pytest

__all__ = ["FIGURES", "long_mode", "record"]

FIGURES: list[tuple[str, str]] = []


def record(case: str, figure: str) -> None:
    """Keep one case's figure for the summary (and show it with ``-s``)."""
    FIGURES.append((case, figure))
    print(f"[figure] {case}: {figure}")


def long_mode(config: pytest.Config) -> bool:
    """Whether the suite runs in long mode (``--robustness-long``)."""
    return bool(config.getoption("--robustness-long"))
