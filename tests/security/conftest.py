"""The adversarial suite: every test here is an attack class that must keep failing closed.

Run alone with ``pytest -m adversarial``; it also runs in ``make test`` with everything else.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.adversarial)
