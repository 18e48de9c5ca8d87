"""One check record for every verdict the flows make (the release gate, the canary): shared
here so that neither wing imports the other."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    value: float | None
    limit: float | None
    detail: str
