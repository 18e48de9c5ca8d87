"""Schemathesis against the hub's own OpenAPI document: every operation, three callers (no token,
a live device token, the admin token), schema-valid and schema-violating requests. Whatever is
sent, the hub answers without a 5xx, with a status and media type the document lists for that
operation, and with a body that its schema allows (a refusal is a `Refusal`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from hypothesis.strategies import SearchStrategy
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Err

from hub import registry
from hub.app import create_app
from hub.state import Hub
from tests.support.hub import ADMIN_TOKEN, hub_settings

pytestmark = pytest.mark.slow

DEVICE_ID = "cam-fuzz"
# No 5xx; every status, media type and body as the document says (refusals: {"detail": ...}).
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance,
          content_type_conformance]
# Per operation and generation mode. Derandomized, so CI replays the same requests; enough to
# get past the first refusal into the handlers, few enough that the file runs in well under 90 s.
EXAMPLES = 13
# No shrinking: a failure is reported as found, and a regression cannot stall CI for minutes.
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
                print_blob=False)


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[FastAPI]:
    yield from _app(f"sqlite:///{tmp_path / 'hub.sqlite'}", tmp_path)


@pytest.fixture
def hub_app(db_url: str, tmp_path: Path) -> Iterator[FastAPI]:
    """On SQLite and PostgreSQL: each refuses other values (NUL in text, integers too big).

    Only the admin run takes both: it reaches the most queries; the device's writes are pinned
    on both databases by test_hub_hostile_input.py."""
    yield from _app(db_url, tmp_path)


def _app(db_url: str, tmp_path: Path) -> Iterator[FastAPI]:
    app = create_app(hub_settings(db_url, tmp_path))
    try:
        yield app
    finally:
        app.state.hub.db.dispose()  # the ASGI test client does not run the app's lifespan


def device_token(app: FastAPI) -> str:
    hub: Hub = app.state.hub
    return registry.add_device(hub.db, DEVICE_ID, "stable").token


def as_own_device(case: schemathesis.Case) -> schemathesis.Case:
    """The case with its JSON body's device ids set to the token's device, so that a device's
    fuzzed writes get past the "only as itself" check into validation and storage."""
    body = case.body
    if isinstance(body, dict):
        if "device_id" in body:
            body["device_id"] = DEVICE_ID
        records = body.get("records")
        for record in records if isinstance(records, list) else []:
            if isinstance(record, dict) and "device_id" in record:
                record["device_id"] = DEVICE_ID
    return case


def fuzz_every_operation(app: FastAPI, token: str | None, *,
                         own_device: bool = False) -> list[str]:
    """Runs each operation's strategies; returns one line per operation that failed a check."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    failed: list[str] = []
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # an operation the document describes wrongly
        operations.append(result.ok())
    assert len(operations) > 20, "the hub's OpenAPI document lost its operations"
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(mode)
            run = _fuzz(strategy.map(as_own_device) if own_device else strategy, headers)
            try:
                run()
            except Unsatisfiable:
                if mode is GenerationMode.POSITIVE:
                    raise
                # An operation without parameters or body has nothing to violate.
            except (Exception, BaseExceptionGroup) as failure:  # a check failed, or the app raised
                failed.append(f"{operation.label} ({mode.value}): {failure}".strip()[:2000])
    return failed


def _fuzz(strategy: SearchStrategy[schemathesis.Case],
          headers: dict[str, str]) -> Callable[[], None]:
    @FUZZ
    @given(case=strategy)
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    return run


def test_without_a_token_every_operation_is_refused_cleanly(sqlite_app: FastAPI) -> None:
    failed = fuzz_every_operation(sqlite_app, None)
    assert not failed, "\n\n".join(failed)


def test_with_a_device_token_no_request_crashes_the_hub(sqlite_app: FastAPI) -> None:
    failed = fuzz_every_operation(sqlite_app, device_token(sqlite_app), own_device=True)
    assert not failed, "\n\n".join(failed)


def test_with_the_admin_token_no_request_crashes_the_hub(hub_app: FastAPI) -> None:
    failed = fuzz_every_operation(hub_app, ADMIN_TOKEN)
    assert not failed, "\n\n".join(failed)
