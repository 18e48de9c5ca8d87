"""The release's report: the canary's verdict and what was done, as Markdown."""

from __future__ import annotations

from typing import Any

from edge_runtime.contract import ReleaseManifest
from flows.release.canary import CanaryVerdict


def verdict_markdown(manifest: ReleaseManifest, verdict: CanaryVerdict, action: str,
                     who: str = "canary telemetry") -> str:
    lines = [f"# Release {manifest.release_id} (version {manifest.version}): "
             f"**{verdict.verdict.value.upper()}**", "",
             f"Decided by {who}: {verdict.frames} frames from {verdict.devices} canary devices.",
             f"Action: {action}.", ""]
    if verdict.reasons:
        lines += ["Reasons:", "", *(f"- {r}" for r in verdict.reasons), ""]
    if verdict.checks:
        lines += ["| check | result | value | limit | detail |", "|---|---|---|---|---|"]
        lines += [f"| {c.name} | {'pass' if c.passed else 'FAIL'} | {_num(c.value)} | "
                  f"{_num(c.limit)} | {c.detail} |" for c in verdict.checks]
    lineage = manifest.lineage
    lines += ["", f"Lineage: git `{lineage.git_commit[:12] or '?'}`, dataset "
              f"`{lineage.dataset_version or '?'}`, params `{lineage.params_hash[:12] or '?'}`, "
              f"parent `{lineage.parent_release or '-'}`."]
    return "\n".join(lines) + "\n"


def _num(value: Any) -> str:
    return "" if value is None else f"{value:g}"
