"""Drift check calibration: false-alarm rate, detection power, delay and cost, with the seed model.

Replays simulator frames (and ImageNet-C corruptions of them) through the device's own pipeline
once, caching the telemetry under var/drift_bench/; draws windows from it; calibrates the window's
false-alarm budget (family_alpha) on calibration seeds only, then measures false alarms, detection
rate and delay on other seeds with the adapter's fast path (Evidently's own stattests, no HTML),
and times the full Evidently Report. Prints one JSON document (results: bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import sys
import time
import types
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flows.offline import use_offline_environment  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CHUNK = 50  # frames per work unit: small enough for a smooth progress bar
WINDOWS = (100, 250, 500, 1000)
SCENARIOS = ("dusk", "new_variant", "camera_bump", "dirty_lens", "line_speedup")
# The 15 ImageNet-C corruptions less glass_blur (1.3 s a frame here: 20x the rest together) and
# fog (imagecorruptions 1.1.2 calls np.float_, gone in NumPy 2).
CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "motion_blur",
               "zoom_blur", "snow", "frost", "brightness", "contrast", "elastic_transform",
               "pixelate", "jpeg_compression")
CORRUPTION_SEVERITIES = (3, 5)
# The subtlest corruption (a warp of a few pixels) gets a pool large enough for window 500.
LONG_POOLS = {"elastic_transform": 600}
ALPHAS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05)  # family_alpha candidates for calibration
FA_TARGET, POWER_TARGET = 0.01, 0.95
FA_MARGIN = 0.5  # calibrate to half the false-alarm target: the test seeds are new draws
DELAY_ONSET, DELAY_AFTER, DELAY_STEP = 1000, 500, 5


@dataclass(frozen=True)
class Plan:
    """What one run replays and scores: the full bench (bench/RESULTS.md), or `QUICK`, every
    stage on a few hundred frames (a smoke run for the tests; its figures mean nothing)."""

    windows: tuple[int, ...] = WINDOWS
    scenarios: tuple[str, ...] = SCENARIOS
    corruptions: tuple[str, ...] = CORRUPTIONS
    reference_frames: int = 1000
    calibration_frames: int = 1500
    baseline_frames: int = 3000
    full_frames: int = 1000  # each scenario at full severity
    half_frames: int = 400
    corruption_frames: int | None = None  # None: --corruption-frames, LONG_POOLS for some
    delay_onset: int = DELAY_ONSET
    delay_after: int = DELAY_AFTER
    cost_rows: tuple[int, ...] = (100, 500, 1000, 5000)


FULL = Plan()
# At the shipped config's floors (min_reference_rows 200, min_current_rows 50): one window
# size, pools just larger than it, as many baseline frames before the delay's onset as it.
QUICK = Plan(windows=(50,), scenarios=("dusk",), corruptions=("elastic_transform",),
             reference_frames=200, calibration_frames=60, baseline_frames=100, full_frames=60,
             half_frames=60, corruption_frames=60, delay_onset=50, delay_after=50,
             cost_rows=(100,))


@dataclass(frozen=True)
class TelemetrySet:
    """One cached table of replayed telemetry: `frames` frames of a simulator stream, optionally
    passed through one ImageNet-C corruption first."""

    key: str
    scenario: str
    seed: int
    stream: str
    frames: int
    severity: float = 1.0  # of the simulator scenario (0 baseline .. 1 full)
    corruption: str | None = None
    corruption_severity: int = 0


def telemetry_sets(corruption_frames: int, plan: Plan = FULL) -> list[TelemetrySet]:
    """Every table the bench needs. Seeds never repeat across roles: the reference, the
    calibration pool and the test pools are different streams of the line."""
    sets = [
        TelemetrySet("reference", "baseline", 101, "reference", plan.reference_frames),
        TelemetrySet("calibration", "baseline", 202, "calibration", plan.calibration_frames),
        TelemetrySet("baseline", "baseline", 303, "test", plan.baseline_frames),
    ]
    for name in plan.scenarios:
        sets.append(TelemetrySet(f"{name}@1.0", name, 404, f"test-{name}", plan.full_frames))
        sets.append(TelemetrySet(f"{name}@0.5", name, 505, f"half-{name}", plan.half_frames,
                                 severity=0.5))
    for name in plan.corruptions:
        frames = plan.corruption_frames or LONG_POOLS.get(name, corruption_frames)
        for level in CORRUPTION_SEVERITIES:
            sets.append(TelemetrySet(f"{name}@{level}", "baseline", 606, "corrupt", frames,
                                     corruption=name, corruption_severity=level))
    return sets


# -- replay (worker processes) -------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(model: str) -> None:
    import cv2

    from edge_runtime.detector import Detector

    cv2.setNumThreads(1)  # one process per core: no oversubscription
    _WORKER["detector"] = Detector(Path(model), threads=1)
    _WORKER["imagecorruptions"] = _patch_imagecorruptions()


def _patch_imagecorruptions() -> Any:
    """imagecorruptions 1.1.2 against today's stack: it imports pkg_resources (gone from
    setuptools >= 81) for its frost images, and passes `multichannel=True` to
    skimage.filters.gaussian (removed from scikit-image; now `channel_axis=-1`)."""
    if "pkg_resources" not in sys.modules:
        shim = types.ModuleType("pkg_resources")

        def resource_filename(module: str, name: str) -> str:
            package = module.rpartition(".")[0] or module
            return str(resources.files(package).joinpath(name))

        shim.resource_filename = resource_filename  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
    import imagecorruptions
    import imagecorruptions.corruptions as corruptions
    import skimage.filters

    def gaussian(image: Any, *args: Any, multichannel: bool | None = None, **kwargs: Any) -> Any:
        if multichannel:
            kwargs["channel_axis"] = -1
        return skimage.filters.gaussian(image, *args, **kwargs)

    corruptions.gaussian = gaussian
    return imagecorruptions


def _replay_chunk(job: tuple[list[TelemetrySet], int, int]) -> tuple[list[str], list[list[dict]]]:
    """Renders frames [start, start+n) of the sets' shared stream once, applies each set's
    corruption (if any), and replays them: rows per set."""
    import sim
    from edge_runtime.replay import replay_rows
    from edge_runtime.sources import CapturedFrame
    from sim.render import render_frame
    from sim.stream import frame_rng

    group, start, n = job
    first = group[0]
    target = sim.get_scenario(first.scenario).conditions
    conditions = sim.BASELINE.toward(target, first.severity)
    images = [render_frame(frame_rng(first.seed, first.stream, i), conditions, 320)[0]
              for i in range(start, start + n)]
    out = []
    for spec in group:
        frames = []
        for i, image in zip(range(start, start + n), images, strict=True):
            if spec.corruption is not None:
                image = _corrupt(image, spec, i)
            frames.append(CapturedFrame(image, T0 + timedelta(milliseconds=100 * i), str(i)))
        out.append(replay_rows(_WORKER["detector"], frames, device_id="bench"))
    return [s.key for s in group], out


def _corrupt(image: np.ndarray, spec: TelemetrySet, index: int) -> np.ndarray:
    import cv2

    # imagecorruptions draws from numpy's global generator: seed it per frame for repeatability
    digest = hashlib.sha256(f"{spec.key}/{index}".encode()).digest()
    np.random.seed(int.from_bytes(digest[:4], "little"))
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    out = _WORKER["imagecorruptions"].corrupt(rgb, corruption_name=spec.corruption,
                                              severity=spec.corruption_severity)
    out = np.ascontiguousarray(np.clip(out, 0, 255).astype(np.uint8)[..., :3])
    if out.shape[:2] != image.shape[:2]:  # some corruptions crop or pad; the device sees a frame
        out = cv2.resize(out, (image.shape[1], image.shape[0]))
    return cv2.cvtColor(out, cv2.COLOR_RGB2BGR)


def _jobs(missing: list[TelemetrySet]) -> Iterator[tuple[list[TelemetrySet], int, int]]:
    # Sets that share a stream (the corruptions) are rendered once per chunk.
    groups: dict[tuple[str, int, str, float, int], list[TelemetrySet]] = {}
    for spec in missing:
        groups.setdefault((spec.scenario, spec.seed, spec.stream, spec.severity, spec.frames),
                          []).append(spec)
    for group in groups.values():
        for start in range(0, group[0].frames, CHUNK):
            yield group, start, min(CHUNK, group[0].frames - start)


def load_telemetry(model: Path, cache: Path, sets: list[TelemetrySet], workers: int,
                   log: Any) -> dict[str, Path]:
    """Every set's telemetry as a Parquet file, replaying (in `workers` processes) what the cache
    lacks. The cache is keyed by the model's hash and each set's parameters."""
    from rich.console import Console
    from rich.progress import Progress

    digest = hashlib.sha256(model.read_bytes()).hexdigest()[:12]
    folder = cache / digest
    folder.mkdir(parents=True, exist_ok=True)

    def path(spec: TelemetrySet) -> Path:
        tag = hashlib.sha256(repr(spec).encode()).hexdigest()[:8]
        return folder / f"{spec.key.replace('@', '_')}-{tag}.parquet"

    missing = [s for s in sets if not path(s).is_file()]
    if missing:
        total = sum(s.frames for s in missing)
        log(f"replaying {total} frames for {len(missing)} sets with {workers} workers")
        parts: dict[str, list[list[dict]]] = {s.key: [] for s in missing}
        specs = {s.key: s for s in missing}
        started = time.perf_counter()
        with Progress(console=Console(stderr=True), transient=True) as progress, \
                multiprocessing.get_context("spawn").Pool(
                workers, initializer=_init_worker, initargs=(str(model),)) as pool:
            bar = progress.add_task("replay", total=total)
            for keys, rows in pool.imap_unordered(_replay_chunk, _jobs(missing)):
                for key, chunk in zip(keys, rows, strict=True):
                    parts[key].append(chunk)
                    progress.advance(bar, len(chunk))
                    if sum(map(len, parts[key])) == specs[key].frames:  # a set is complete
                        _write_set(path(specs[key]), parts.pop(key))
        log(f"replayed in {time.perf_counter() - started:.0f} s")
    return {s.key: path(s) for s in sets}


def _write_set(path: Path, chunks: list[list[dict]]) -> None:
    import pandas as pd

    frame = pd.DataFrame([r for chunk in chunks for r in chunk])
    frame["frame_id"] = frame["source_name"].astype(int)
    tmp = path.with_suffix(".tmp")
    frame.sort_values("frame_id").reset_index(drop=True).to_parquet(tmp)
    tmp.replace(path)


# -- scoring windows (worker processes) ----------------------------------------------------------

_TABLES: dict[str, Any] = {}


def _quiet() -> None:
    # scipy falls back from the exact K-S p-value to the asymptotic one on ties; that is fine
    warnings.filterwarnings("ignore", message="ks_2samp: Exact calculation unsuccessful")


def _init_scorer(cache_files: dict[str, str], config_path: str) -> None:
    import pandas as pd

    _quiet()
    from flows.drift.settings import load_drift_config

    _TABLES.update({k: pd.read_parquet(v) for k, v in cache_files.items()})
    _TABLES["__config__"] = load_drift_config(Path(config_path))


Scored = tuple[bool, list[float], list[str]]  # drift, tested columns' p-values, drifted groups


def _score(job: tuple[str, int, int, int, float]) -> list[Scored]:
    """`count` random windows of `size` rows (subsets without replacement) of one pool, scored
    with the config at `family_alpha`."""
    from dataclasses import replace

    from flows.drift.evidently_drift import screen_drift

    key, size, count, seed, alpha = job
    pool, reference = _TABLES[key], _TABLES["reference"]
    config = replace(_TABLES["__config__"], family_alpha=alpha)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        rows = np.sort(rng.choice(len(pool), size, replace=False))
        verdict = screen_drift(reference, pool.iloc[rows], config)
        out.append((verdict.drift, [c.score for c in verdict.columns if c.score is not None],
                    [g.value for g in verdict.groups]))
    return out


def _delay(job: tuple[str, int, float, int, int]) -> int | None:
    """Frames from an abrupt onset to the end of the first flagged sliding window: the stream is
    `onset` (1000) held-out baseline frames then `after` of the scenario's frames (the pipeline
    keeps no state across frames, so this equals sim.DriftSchedule(ABRUPT, onset=1000))."""
    from dataclasses import replace

    import pandas as pd

    from flows.drift.evidently_drift import screen_drift

    key, size, alpha, onset, after = job
    stream = pd.concat([_TABLES["baseline"].iloc[-onset:], _TABLES[key].iloc[:after]],
                       ignore_index=True)
    config = replace(_TABLES["__config__"], family_alpha=alpha)
    for end in range(onset + DELAY_STEP, onset + after + 1, DELAY_STEP):
        if screen_drift(_TABLES["reference"], stream.iloc[end - size:end], config).drift:
            return end - onset
    return None


def _rates(results: list[Scored], alpha: float | None = None) -> float:
    """Share of flagged windows: as scored, or re-decided at `alpha` by the shipped rule (p-value
    columns, Bonferroni, any one column drifts the window, no effect floor)."""
    if alpha is None:
        return sum(d for d, _, _ in results) / len(results)
    return sum(any(p <= alpha / len(ps) for p in ps) for _, ps, _ in results) / len(results)


def _default_rules(results: list[Scored]) -> dict[str, float]:
    """Evidently's defaults on these columns (reference of 1000 rows: K-S at p 0.05 per column):
    any one column, and DataDriftPreset's dataset drift (at least half the columns)."""
    n = len(results)
    return {"any_column_p05": sum(any(p <= 0.05 for p in ps) for _, ps, _ in results) / n,
            "preset_share_0.5": sum(sum(p <= 0.05 for p in ps) >= len(ps) / 2
                                    for _, ps, _ in results) / n}


Run = Callable[[Callable[[Any], Any], list[Any], str], list[Any]]


@contextmanager
def scoring_pool(paths: dict[str, Path], config_path: Path, workers: int) -> Iterator[Run]:
    """`workers` scoring processes holding the tables `paths` (key "reference": the reference)
    and the config; yields run(fn, jobs, label): fn's results in job order, with a progress bar."""
    from rich.console import Console
    from rich.progress import Progress

    files = {k: str(p) for k, p in paths.items()}
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_scorer, initargs=(files, str(config_path))) as pool, \
            Progress(console=Console(stderr=True), transient=True) as progress:
        def run(fn: Callable[[Any], Any], jobs: list[Any], label: str) -> list[Any]:
            bar = progress.add_task(label, total=len(jobs))
            out = []
            for result in pool.imap(fn, jobs):
                out.append(result)
                progress.advance(bar)
            return out

        yield run


def evaluate(paths: dict[str, Path], config_path: Path, workers: int, fa_windows: int,
             power_windows: int, log: Any, plan: Plan = FULL) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from flows.drift.settings import load_drift_config

    sizes = {k: pq.ParquetFile(p).metadata.num_rows for k, p in paths.items()}
    shipped = load_drift_config(config_path)
    with scoring_pool(paths, config_path, workers) as run:
        null_jobs = [(k, w, fa_windows, 7 * w + i, shipped.family_alpha)
                     for i, k in enumerate(("calibration", "baseline")) for w in plan.windows]
        null = dict(zip([(k, w) for k, w, *_ in null_jobs], run(_score, null_jobs, "null"),
                        strict=True))
        calibration = {str(a): {str(w): _rates(null["calibration", w], a) for w in plan.windows}
                       for a in ALPHAS}
        ok = [a for a in ALPHAS
              if max(calibration[str(a)].values()) <= FA_TARGET * FA_MARGIN]
        alpha = max(ok) if ok else min(ALPHAS)
        log(f"calibrated family_alpha {alpha} (config has {shipped.family_alpha})")
        if alpha != shipped.family_alpha:  # measure what calibration chose, not the file
            null_jobs = [j for j in null_jobs if j[0] == "baseline"]
            null |= dict(zip([(k, w) for k, w, *_ in null_jobs],
                             run(_score, [(*j[:4], alpha) for j in null_jobs], "null"),
                             strict=True))
        drift_keys = [k for k in paths if "@" in k]
        power_jobs = [(k, w, power_windows, 11 * w + i, alpha)
                      for i, k in enumerate(drift_keys) for w in plan.windows if w < sizes[k]]
        power = dict(zip([(k, w) for k, w, *_ in power_jobs],
                         run(_score, power_jobs, "power"), strict=True))
        delay_jobs = [(f"{s}@1.0", w, alpha, plan.delay_onset, plan.delay_after)
                      for s in plan.scenarios for w in plan.windows[:3]]
        delays = dict(zip(delay_jobs, run(_delay, delay_jobs, "delay"), strict=True))
    detection: dict[str, dict[str, dict[str, float]]] = {}
    defaults: dict[str, dict[str, dict[str, float]]] = {"false_alarm_rate": {}}
    for (key, w), results in power.items():
        name, level = key.split("@")
        detection.setdefault(name, {}).setdefault(level, {})[str(w)] = _rates(results)
        defaults.setdefault(key, {})[str(w)] = _default_rules(results)
    for w in plan.windows:
        defaults["false_alarm_rate"][str(w)] = _default_rules(null["baseline", w])
    fa = {str(w): _rates(null["baseline", w]) for w in plan.windows}
    # Targets: each scenario at full severity, each corruption (severities 3 and 5), judged at
    # the largest window measured up to 500 frames (500, or 250 for 300-frame pools).
    misses, groups = [], {}
    for name, levels in detection.items():
        for level, rates in levels.items():
            judged = max((w for w in rates if int(w) <= 500), key=int)
            if (name in CORRUPTIONS or level == "1.0") and rates[judged] < POWER_TARGET:
                misses.append(f"{name}@{level} w{judged}: {rates[judged]:.2f}")
            # which signal groups moved: share of the judged windows flagging each group
            flagged = power[f"{name}@{level}", int(judged)]
            counts = Counter(g for _, _, gs in flagged for g in gs)
            groups[f"{name}@{level}"] = {g: round(n / len(flagged), 2)
                                         for g, n in counts.most_common()}
    return {
        "family_alpha": alpha, "config_family_alpha": shipped.family_alpha,
        "calibration_false_alarm_rate": calibration, "false_alarm_rate": fa,
        "false_alarm_windows": fa_windows, "detection_rate": detection,
        "detection_windows": power_windows,
        "detection_delay_frames": {s: {str(w): delays[(f"{s}@1.0", w, alpha, plan.delay_onset,
                                              plan.delay_after)]
                                       for w in plan.windows[:3]} for s in plan.scenarios},
        "drifted_groups": groups, "evidently_defaults": defaults,
        "targets": {"false_alarm_le_0.01": max(fa.values()) <= FA_TARGET,
                    "power_ge_0.95": not misses, "below_target": misses},
    }


def cost(paths: dict[str, Path], config_path: Path, rows_tried: tuple[int, ...] = FULL.cost_rows
         ) -> dict[str, Any]:
    """Seconds per check: the full Evidently Report (what the flow runs) and the fast path, for
    windows of 100 to 5,000 rows against the 1,000-row reference; and their verdicts' parity."""
    import pandas as pd

    from flows.drift.evidently_drift import check_drift, screen_drift
    from flows.drift.settings import load_drift_config

    config = load_drift_config(config_path)
    reference, baseline = pd.read_parquet(paths["reference"]), pd.read_parquet(paths["baseline"])
    check_drift(reference, baseline.iloc[:100], config)  # warm-up: first-call imports
    report, fast = {}, {}
    for rows in rows_tried:
        window = baseline.sample(rows, replace=rows > len(baseline), random_state=rows)
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            check_drift(reference, window, config)
            timings.append(time.perf_counter() - started)
        report[str(rows)] = round(sorted(timings)[1], 3)
        started = time.perf_counter()
        for _ in range(10):
            screen_drift(reference, window, config)
        fast[str(rows)] = round((time.perf_counter() - started) / 10, 4)
    same = 0
    parity_sets = ("baseline", "calibration", "dusk@0.5", "new_variant@0.5", "camera_bump@0.5",
                   "pixelate@3")
    windows = [pd.read_parquet(paths[k]).iloc[:250] for k in parity_sets if k in paths]
    for window in windows:
        same += check_drift(reference, window, config).verdict == \
            screen_drift(reference, window, config)
    return {"report_s": report, "fast_path_s": fast,
            "check_1000x1000_s": report.get("1000"),
            "parity": {"windows": len(windows), "identical_verdicts": same}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=ROOT / "models/champion/model.onnx")
    parser.add_argument("--config", type=Path, default=ROOT / "configs/drift.yaml")
    parser.add_argument("--cache", type=Path, default=ROOT / "var/drift_bench")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--corruption-frames", type=int, default=300)
    parser.add_argument("--fa-windows", type=int, default=400)
    parser.add_argument("--power-windows", type=int, default=100)
    parser.add_argument("--quick", action="store_true",
                        help="every stage on a few hundred frames and one window size: a smoke "
                             "run (the tests), not a measurement")
    parser.add_argument("--json", action="store_true", help="print only the JSON document")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    use_offline_environment(ROOT / "var")
    _quiet()
    if not args.model.is_file():
        sys.exit(f"drift_power: {args.model} is missing; run `make seed` first")

    def log(message: str) -> None:
        print(f"drift_power: {message}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    sets = telemetry_sets(args.corruption_frames, plan)
    paths = load_telemetry(args.model, args.cache, sets, args.workers, log)
    replayed = time.perf_counter() - started
    results = evaluate(paths, args.config, args.workers, args.fa_windows, args.power_windows, log,
                       plan)
    log("timing checks")
    results["cost"] = cost(paths, args.config, plan.cost_rows)
    document = {"bench": "drift_power", "quick": args.quick,
                "model": hashlib.sha256(args.model.read_bytes()).hexdigest()[:12],
                "sets": {s.key: s.frames for s in sets}, **results,
                "replay_s": round(replayed, 1),
                "seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(document) if args.json else json.dumps(document, indent=1))


if __name__ == "__main__":
    main()
