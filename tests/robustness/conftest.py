"""Robustness tests: fuzzing, soak and faults, at a modest size unless scaled.

EGRESS_GUARD_ROBUSTNESS_SCALE multiplies their sizes (1 by default: what CI runs); a scale of 10
or more is the on-demand run whose figures the release notes quote. Every test here is marked
`robustness`, so `pytest -m robustness` runs them alone and `-m "not robustness"` skips them.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.robustness)
