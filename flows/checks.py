"""One check record for every verdict the flows make (the release gate, the canary), and the
gate's report file: shared here so that neither wing imports the other."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    value: float | None
    limit: float | None
    detail: str


class GateReportError(ValueError):
    """metrics/gate.json is missing, unreadable or not a gate verdict."""


@dataclass(frozen=True)
class GateReport:
    """`metrics/gate.json`: the gate's verdict as the retrain's gate stage writes it and the
    retrain flow, the profile stage and the release read it (one type for both ends)."""

    ship: bool
    artefact: str | None  # "int8" | "fp32": the file that ships (or would have)
    reasons: tuple[str, ...]  # one line per failed check; empty when it ships
    checks: tuple[Check, ...]
    files: Mapping[str, str | None] = field(default_factory=dict)  # model name -> ONNX file

    @property
    def metrics(self) -> dict[str, float]:
        """Each numeric, finite check value, by check name."""
        return {c.name: float(c.value) for c in self.checks
                if isinstance(c.value, int | float) and not isinstance(c.value, bool)
                and math.isfinite(c.value)}

    def as_dict(self) -> dict[str, Any]:
        return {"ship": self.ship, "artefact": self.artefact, "reasons": list(self.reasons),
                "checks": [asdict(c) for c in self.checks], "files": dict(self.files)}

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> GateReport:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            checks = tuple(Check(str(c["name"]), bool(c["passed"]), c.get("value"),
                                 c.get("limit"), str(c.get("detail", "")))
                           for c in document.get("checks", []))
            artefact = document.get("artefact")
            report = cls(bool(document["ship"]), None if artefact is None else str(artefact),
                         tuple(str(r) for r in document.get("reasons", [])), checks,
                         dict(document.get("files") or {}))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise GateReportError(f"cannot read the gate verdict {path}: {exc}") from None
        return report
