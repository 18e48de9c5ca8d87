"""The labelling ledger: sent samples and collected tasks, recorded once."""

from __future__ import annotations

from pathlib import Path

from flows.labelling.ledger import Ledger, SentTask


def test_a_sample_is_recorded_once_with_its_first_task_and_its_look(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    top = bytes(range(200)) * 2
    assert ledger.record_sent(7, [SentTask("cam/1", 11, top), SentTask("cam/2", 12)], "r1") == 2
    assert ledger.record_sent(7, [SentTask("cam/1", 99, b"other")], "r2") == 0
    again = Ledger(tmp_path / "ledger.sqlite").sent(7)  # reopened: it is on disk
    assert again == {"cam/1": SentTask("cam/1", 11, top), "cam/2": SentTask("cam/2", 12, None)}
    assert ledger.sent(8) == {}


def test_passed_over_samples_are_remembered_per_project(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.record_passed_over(7, ["cam/3", "cam/4"], "r1")
    ledger.record_passed_over(7, ["cam/3"], "r2")
    assert ledger.passed_over(7) == {"cam/3", "cam/4"} and ledger.passed_over(8) == set()


def test_collected_tasks_are_kept_per_project(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "deep" / "ledger.sqlite")
    ledger.record_collected(7, [(11, 101), (12, 102)], "batch-a")
    ledger.record_collected(7, [(11, 150)], "batch-b")  # never collected twice
    assert ledger.collected(7) == {11, 12}
    assert ledger.collected(8) == set()
