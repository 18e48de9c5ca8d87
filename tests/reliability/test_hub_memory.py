"""A burst of hostile uploads against a real `edgeloop hub serve` process: every class is refused
with a 4xx, valid traffic still gets 200, and the hub's peak memory stays within the bound that
its default limits imply (bench/hub_hostile_memory.py, in its quick mode)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bench.hub_hostile_memory import HEAVY, run

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_burst_of_hostile_uploads_stays_within_the_memory_bound(
        database: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    db = None if database == "sqlite" else str(request.getfixturevalue("pg_url"))
    result = run(argparse.Namespace(burst=4, quick=True, db=db), tmp_path)
    classes = result["classes"]
    assert isinstance(classes, dict)
    for name, outcome in classes.items():
        expected = {200} if name == HEAVY else set(range(400, 500))
        assert set(outcome["statuses"]) <= expected, (name, outcome)
        assert set(outcome["valid_statuses"]) == {200}, (name, outcome)
        assert outcome["over_baseline_mib"] <= outcome["bound_mib"], (name, outcome)
    assert result["met"] == {"all_refused_4xx": True, "heavy_stored": True, "within_bound": True,
                             "valid_ok": True}
