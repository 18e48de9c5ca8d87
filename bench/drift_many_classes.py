"""Drift check false alarms with many classes: the seed model (3 classes) and its 80-class
widening (bench/many_class_model.py), side by side, with the shipped drift config untouched.

Both models replay the same simulator frames through the device's pipeline (drift_power's
telemetry sets and cache); stationary windows of the held-out baseline pool are scored against
the 1,000-frame reference exactly as drift_power scores them, and a few shifts show what the
wider Bonferroni split costs in power. Prints one JSON document (results: bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.drift_power import (  # noqa: E402
    FA_TARGET,
    FULL,
    QUICK,
    SCENARIOS,
    Plan,
    _default_rules,
    _quiet,
    _rates,
    _score,
    load_telemetry,
    scoring_pool,
    telemetry_sets,
)
from bench.many_class_model import bench_models  # noqa: E402
from flows.offline import use_offline_environment  # noqa: E402

# The stationary pools, and the shifts drift_power finds hardest (half severity; the subtlest
# corruption), all read from drift_power's cache when it has them.
POWER_SETS = (*(f"{s}@0.5" for s in SCENARIOS), "elastic_transform@3")
NULL_SEED = 1  # drift_power's draw of baseline windows (its null job index), for comparison


def upper_95(hits: int, n: int) -> float:
    """The one-sided 95% (Clopper-Pearson) upper bound of a rate seen `hits` times in `n`."""
    from scipy.stats import beta

    return 1.0 if hits >= n else float(beta.ppf(0.95, hits + 1, n - hits))


def count_columns(reference: Path) -> dict[str, Any]:
    """How sparse the model's count_<class> columns are on the reference frames."""
    import pandas as pd

    table = pd.read_parquet(reference)
    counts = table[[c for c in table.columns if c.startswith("count_")]]
    seen = (counts > 0).mean()
    return {"columns": counts.shape[1], "all_zero": int((seen == 0).sum()),
            "nonzero_on_under_1pct_of_frames": int(((seen > 0) & (seen < 0.01)).sum()),
            "nonzero_on_1_to_10pct": int(((seen >= 0.01) & (seen < 0.1)).sum()),
            "nonzero_on_10pct_or_more": int((seen >= 0.1).sum()),
            "detections_per_frame": round(float(table["detections"].mean()), 2)}


def measure(paths: dict[str, Path], config_path: Path, workers: int, fa_windows: int,
            power_windows: int, plan: Plan = FULL) -> dict[str, Any]:
    """False alarms on stationary windows at the config's family_alpha, and detection of the
    power sets, for one model's telemetry."""
    import pyarrow.parquet as pq

    from flows.drift.settings import load_drift_config

    alpha = load_drift_config(config_path).family_alpha
    sizes = {k: pq.ParquetFile(paths[k]).metadata.num_rows for k in POWER_SETS if k in paths}
    with scoring_pool(paths, config_path, workers) as run:
        null_jobs = [("baseline", w, fa_windows, 7 * w + NULL_SEED, alpha)
                     for w in plan.windows]
        null = dict(zip(plan.windows, run(_score, null_jobs, "null"), strict=True))
        power_jobs = [(k, w, power_windows, 11 * w + i, alpha)
                      for i, k in enumerate(sizes) for w in plan.windows if w < sizes[k]]
        power = dict(zip([(k, w) for k, w, *_ in power_jobs], run(_score, power_jobs, "power"),
                         strict=True))
    fa, upper, tested, groups = {}, {}, {}, {}
    for w, results in null.items():
        hits = sum(d for d, _, _ in results)
        fa[str(w)], upper[str(w)] = hits / len(results), round(upper_95(hits, len(results)), 4)
        n = [len(ps) for _, ps, _ in results]
        tested[str(w)] = {"min": min(n), "max": max(n)}
        groups[str(w)] = dict(Counter(g for d, _, gs in results if d for g in gs))
    detection: dict[str, dict[str, float]] = {}
    for (key, w), results in power.items():
        detection.setdefault(key, {})[str(w)] = _rates(results)
    return {
        "count_columns": count_columns(paths["reference"]),
        "tested_columns": tested,
        "column_threshold": {w: alpha / t["max"] for w, t in tested.items()},
        "false_alarm_rate": fa, "false_alarm_upper_95": upper,
        "false_alarm_groups": groups,
        "evidently_defaults_false_alarm_rate": {str(w): _default_rules(r)
                                                for w, r in null.items()},
        "detection_rate": detection,
        "target_false_alarm_le_0.01": max(fa.values()) <= FA_TARGET,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=Path, default=ROOT / "tests/fixtures/seed_best.pt",
                        help="the trained 3-class seed checkpoint both models come from")
    parser.add_argument("--config", type=Path, default=ROOT / "configs/drift.yaml")
    parser.add_argument("--cache", type=Path, default=ROOT / "var/drift_bench",
                        help="replayed telemetry (shared with drift_power)")
    parser.add_argument("--models", type=Path, default=ROOT / "var/drift_many_classes",
                        help="where the two ONNX models are built and kept")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fa-windows", type=int, default=400)
    parser.add_argument("--power-windows", type=int, default=100)
    parser.add_argument("--no-power", action="store_true", help="false alarms only")
    parser.add_argument("--quick", action="store_true",
                        help="drift_power's quick sets and one window size: a smoke run (the "
                             "tests), not a measurement")
    parser.add_argument("--json", action="store_true", help="print only the JSON document")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    use_offline_environment(ROOT / "var")
    _quiet()

    def log(message: str) -> None:
        print(f"drift_many_classes: {message}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    models = bench_models(args.weights, args.models)
    wanted = {"reference", "baseline", *(() if args.no_power else POWER_SETS)}
    sets = [s for s in telemetry_sets(corruption_frames=300, plan=plan) if s.key in wanted]
    results, replay_s = {}, 0.0
    for classes, model in models.items():
        log(f"{classes}-class model {model}")
        t0 = time.perf_counter()
        paths = load_telemetry(model, args.cache, sets, args.workers, log)
        replay_s += time.perf_counter() - t0
        results[str(classes)] = {
            "model": hashlib.sha256(model.read_bytes()).hexdigest()[:12],
            **measure(paths, args.config, args.workers, args.fa_windows,
                      0 if args.no_power else args.power_windows, plan)}
    document = {"bench": "drift_many_classes", "quick": args.quick,
                "sets": {s.key: s.frames for s in sets},
                "false_alarm_windows": args.fa_windows,
                "detection_windows": 0 if args.no_power else args.power_windows,
                "models": results,
                "target_false_alarm_le_0.01": all(r["target_false_alarm_le_0.01"]
                                                  for r in results.values()),
                "replay_s": round(replay_s, 1),
                "seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(document) if args.json else json.dumps(document, indent=1))


if __name__ == "__main__":
    main()
