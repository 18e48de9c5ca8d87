"""The webhook endpoint's rules: which events count, and collection once annotators pause."""

from __future__ import annotations

import json

import httpx
import pytest

from flows.labelling.labelstudio_webhook import (
    SECRET_HEADER,
    DebouncedCollector,
    WebhookEndpoint,
    is_new_annotation,
)


def event(action: str = "ANNOTATION_CREATED", project: int = 3, cancelled: bool = False
          ) -> dict:
    return {"action": action, "project": {"id": project}, "task": {"id": 1},
            "annotation": {"id": 9, "was_cancelled": cancelled}}


@pytest.mark.parametrize(("payload", "counts"), [
    (event(), True), (event("ANNOTATIONS_CREATED"), True), (event("PROJECT_UPDATED"), False),
    (event(project=4), False), (event(cancelled=True), False), ({}, False)])
def test_only_new_submitted_annotations_of_our_project_count(payload: dict, counts: bool
                                                              ) -> None:
    assert is_new_annotation(payload, 3) is counts


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_collection_waits_for_a_pause_and_runs_once_per_burst() -> None:
    clock, runs = Clock(), []
    collector = DebouncedCollector(lambda: runs.append(clock.now), quiet_s=30, clock=clock)
    assert not collector.run_if_due()  # nothing happened yet
    for t in (0.0, 10.0, 25.0):
        clock.now = t
        collector.notify()
    clock.now = 50.0
    assert not collector.run_if_due()  # 25 s since the last annotation
    clock.now = 56.0
    assert collector.run_if_due() and runs == [56.0]
    clock.now = 200.0
    assert not collector.run_if_due()


def test_a_failed_collection_is_retried_later() -> None:
    clock, calls = Clock(), []

    def collect() -> None:
        calls.append(clock.now)
        if len(calls) == 1:
            raise OSError("dvc push failed")

    collector = DebouncedCollector(collect, quiet_s=0, clock=clock)
    collector.notify()
    assert not collector.run_if_due() and collector.last_error == "dvc push failed"
    assert collector.run_if_due() and collector.runs == 1


def test_the_endpoint_checks_the_secret_and_queues_relevant_events() -> None:
    clock = Clock()
    collector = DebouncedCollector(lambda: None, quiet_s=5, clock=clock)
    endpoint = WebhookEndpoint("127.0.0.1", 0, "s3cret", 3, collector)
    endpoint.start()
    try:
        url = f"http://127.0.0.1:{endpoint.port}"
        with httpx.Client(base_url=url, trust_env=False, timeout=10) as http:
            assert http.post("/labelstudio", json=event()).status_code == 401
            wrong = http.post("/labelstudio", json=event(project=4),
                              headers={SECRET_HEADER: "s3cret"})
            clock.now = 10.0
            assert wrong.json() == {"queued": False} and not collector.due()
            clock.now = 0.0
            answer = http.post("/labelstudio", content=json.dumps(event()),
                               headers={SECRET_HEADER: "s3cret"})
            assert answer.json() == {"queued": True}
            assert http.post("/labelstudio", content=b"{nope",
                             headers={SECRET_HEADER: "s3cret"}).status_code == 400
            assert http.get("/healthz").json()["status"] == "ok"
    finally:
        endpoint.stop()
    clock.now = 10.0
    assert collector.due()
