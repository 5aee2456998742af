"""Fixtures shared by unit-test modules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.test_state_snapshot import Env


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    """Keyed state backends of both kinds made in ``tmp_path`` (``Env``), disposed after the test. (Modules with
    their own ``env`` fixture, e.g. test_state_ttl.py, override this one.)"""
    e = Env(tmp_path)
    yield e
    for b in e.made:
        b.dispose()
