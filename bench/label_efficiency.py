"""Target bench: how many labels it takes to win back new_variant, chosen by our selection or at
random.

A pool of new_variant frames (with --drift-share below 1, mixed with baseline frames, as in a
window where the drift arrives) goes through the seed model (ONNX, as on a device); N frames are
picked by `select_for_labelling` or uniformly at random from the same pool, labelled with the
simulator's truth, and the seed `best.pt` is fine-tuned on them plus a replay share of seed
training frames. The curve is mAP50 on the drifted test set (the seed pipeline's
test_new_variant); the target is fewer labels than random to reach 90% of the seed's baseline
mAP50. Every run gets the same compute (image-epochs), so only the choice of frames differs.

    .venv/bin/python bench/label_efficiency.py --json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import click
import cv2
import numpy as np

from edge_runtime.contract import SampleMeta, SamplePolicy
from edge_runtime.sampling.frame import frame_view
from edge_runtime.sampling.rules import predictions, uncertainty
from flows.labelling.select import Candidate, candidate, look_of, select_for_labelling
from flows.offline import use_offline_environment
from sim.dataset import data_yaml, render_dataset

ROOT = Path(__file__).resolve().parent.parent

SCENARIO = "new_variant"
TEST_SEED = 7  # the seed pipeline's render seed: the same test frames as data/seed/test_*
POOL_SEED = 1007  # the pool and the replay frames must not overlap the test frames
METHODS = ("selected", "random")


@dataclass(frozen=True)
class Settings:
    sizes: tuple[int, ...]
    pool: int
    drift_share: float  # of the pool: new_variant frames; the rest are baseline frames
    replay_share: float  # of each fine-tuning set: seed training frames, so nothing is forgotten
    image_epochs: int  # images seen per run (epochs = image_epochs / set size)
    min_epochs: int
    max_epochs: int
    min_distance: float
    random_seed: int
    test_frames: int
    weights: Path
    onnx: Path
    work: Path


def parse(argv: Sequence[str] | None) -> tuple[Settings, bool]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--sizes", default="25,50,100,200", help="labelled frames per run")
    p.add_argument("--pool", type=int, default=600, help="candidate frames the choice is from")
    # The pool is what the hub holds when a labelling round starts after a drift alarm: the
    # devices' kept frames from a window in which the drift arrives, mostly from before it. A pool
    # of drifted frames only (1.0) makes any choice equivalent (every frame shows the new part).
    p.add_argument("--drift-share", type=float, default=0.25,
                   help="share of the pool showing the drift (the rest: baseline frames)")
    p.add_argument("--replay-share", type=float, default=0.33)
    p.add_argument("--image-epochs", type=int, default=1000)
    p.add_argument("--min-epochs", type=int, default=6)
    p.add_argument("--max-epochs", type=int, default=25)
    p.add_argument("--min-distance", type=float, default=0.15)
    p.add_argument("--random-seed", type=int, default=0)
    p.add_argument("--test-frames", type=int, default=200,
                   help="frames of each test set (the seed pipeline's test sets have 200)")
    p.add_argument("--weights", type=Path, default=ROOT / "models/champion/best.pt")
    p.add_argument("--onnx", type=Path, default=ROOT / "models/champion/model.onnx")
    p.add_argument("--work", type=Path, default=ROOT / "var/bench/label_efficiency")
    a = p.parse_args(argv)
    sizes = tuple(sorted(int(s) for s in a.sizes.split(",")))
    if not sizes or sizes[0] < 1 or sizes[-1] > a.pool:
        p.error(f"--sizes must lie in 1..--pool ({a.pool})")
    if not 0 < a.drift_share <= 1:
        p.error("--drift-share must be in (0, 1]")
    if not 0 <= a.replay_share < 1:
        p.error("--replay-share must be in [0, 1)")
    if a.test_frames < 1:
        p.error("--test-frames must be >= 1")
    for path in (a.weights, a.onnx):
        if not path.is_file():
            p.error(f"{path} does not exist (run `make seed` or `dvc pull`)")
    return Settings(sizes, a.pool, a.drift_share, a.replay_share, a.image_epochs, a.min_epochs,
                    a.max_epochs, a.min_distance, a.random_seed, a.test_frames, a.weights,
                    a.onnx, a.work.resolve()), a.json


# -- data ----------------------------------------------------------------------------------------


def render(work: Path, name: str, scenario: str, frames: int, seed: int) -> Path:
    """A YOLO folder of `frames` frames (kept between runs: rendering is deterministic)."""
    out = work / "data" / name
    done = out / ".done"
    if not done.exists() or done.read_text() != f"{scenario} {frames} {seed}":
        shutil.rmtree(out, ignore_errors=True)
        render_dataset(out, scenario, frames, seed, 320, split=name)
        (out / "data.yaml").write_text(data_yaml("images", "images"))
        done.write_text(f"{scenario} {frames} {seed}")
    return out


def pool_candidates(pools: list[Path], onnx: Path, bar: click._termui_impl.ProgressBar[int]
                    ) -> list[Candidate]:
    """The seed model's view of every pool frame, as a device would report a kept frame; record
    ids are `<pool folder>/<file stem>`."""
    from edge_runtime.detector import Detector

    detector = Detector(onnx, imgsz=320)
    names = detector.info.names
    out = []
    for path in sorted(p for pool in pools for p in (pool / "images").glob("*.jpg")):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(f"cannot read {path}")
        inference = detector(image)
        view = frame_view(inference, names)
        meta = SampleMeta(device_id=path.parent.parent.name, model_version="seed",
                          frame_id=int(path.stem[-6:]),
                          captured_at=datetime.now(UTC), policy=SamplePolicy.UNCERTAIN,
                          uncertainty=uncertainty(view.scores.tolist()), width=view.width,
                          height=view.height, predictions=list(predictions(view)))
        found = candidate(meta, look_of(image))
        out.append(replace(found, record_id=f"{path.parent.parent.name}/{path.stem}"))
        bar.update(1)
    return out


def choose(method: str, candidates: list[Candidate], n: int, s: Settings) -> list[str]:
    """Record ids chosen by `method` (prefixes: each n extends the smaller n)."""
    if method == "selected":
        picked = select_for_labelling(candidates, n, min_distance=s.min_distance)
    else:
        picked = random.Random(s.random_seed).sample(candidates, len(candidates))[:n]
    return [c.record_id for c in picked]


def training_set(work: Path, name: str, chosen: list[str], replay: Path, replay_n: int,
                 val: Path) -> Path:
    out = work / "sets" / name
    shutil.rmtree(out, ignore_errors=True)
    (out / "images").mkdir(parents=True)
    (out / "labels").mkdir()
    picks = [(work / "data" / r.split("/")[0], r.split("/")[1]) for r in chosen]
    picks += [(replay, f"train_{i:06d}") for i in range(replay_n)]
    for folder, stem in picks:
        shutil.copyfile(folder / "images" / f"{stem}.jpg", out / "images" / f"{stem}.jpg")
        shutil.copyfile(folder / "labels" / f"{stem}.txt", out / "labels" / f"{stem}.txt")
    spec = out / "data.yaml"
    spec.write_text(data_yaml(str(out / "images"), str(val / "images")))
    return spec


# -- runs ----------------------------------------------------------------------------------------


def fine_tune(spec: Path, frames: int, s: Settings, run: Path) -> Path:
    from flows.retrain.ultralytics_yolo import TrainSettings, train

    epochs = max(s.min_epochs, min(s.max_epochs, round(s.image_epochs / frames)))
    settings = TrainSettings(
        model=str(s.weights), imgsz=320, epochs=epochs, batch=16, seed=0, cache=True,
        # Fine-tuning a model that already works: the backbone stays frozen (half the compute;
        # the new nut needs new heads, not new edges), no warm-up (its bias LR of 0.1 would undo
        # the seed training), mosaic only in the first half, no per-epoch validation.
        freeze=10, warmup_epochs=0, optimizer="AdamW", lr0=0.001,
        val=False, augment={"close_mosaic": max(1, epochs // 2), "workers": 0})
    return train(spec, run / "weights", settings, run)


def map50(weights: Path, test: Path, run: Path) -> dict[str, float]:
    from flows.retrain.ultralytics_yolo import evaluate

    m = evaluate(weights, test / "data.yaml", 320, run)
    return {"map50": round(m.map50, 4), **{f"ap50_{k}": round(v, 4)
                                             for k, v in m.ap50_per_class.items()}}


def labels_to(curve: list[dict[str, float]], target: float) -> int | None:
    return next((int(point["n"]) for point in curve if point["map50"] >= target), None)


def main(argv: Sequence[str] | None = None) -> None:
    s, as_json = parse(argv)
    started = time.monotonic()
    use_offline_environment(ROOT / "var")
    import os

    os.environ.setdefault("YOLO_VERBOSE", "False")  # our bar, not one per epoch
    work = s.work
    work.mkdir(parents=True, exist_ok=True)
    test_base = render(work, "test_baseline", "baseline", s.test_frames, TEST_SEED)
    test_drift = render(work, f"test_{SCENARIO}", SCENARIO, s.test_frames, TEST_SEED)
    val = render(work, "val", SCENARIO, 8, POOL_SEED)  # only the last epoch validates
    drifted = round(s.pool * s.drift_share)
    pools = [render(work, "pool", SCENARIO, drifted, POOL_SEED)]
    if drifted < s.pool:
        pools.append(render(work, "pool_baseline", "baseline", s.pool - drifted, POOL_SEED))
    replay_max = round(s.sizes[-1] * s.replay_share / (1 - s.replay_share))
    replay = render(work, "train", "baseline", max(replay_max, 1), TEST_SEED)

    runs = [(m, n) for m in METHODS for n in s.sizes]
    # Ultralytics writes its own progress to stdout: keep stdout for our one JSON line.
    with contextlib.redirect_stdout(sys.stderr), click.progressbar(
            length=s.pool + 2 + len(runs), label="label efficiency", file=sys.stderr,
            show_pos=True) as bar:
        candidates = pool_candidates(pools, s.onnx, bar)
        baseline = map50(s.weights, test_base, work / "runs" / "seed_baseline")
        bar.update(1)
        seed_drift = map50(s.weights, test_drift, work / "runs" / "seed_drift")
        bar.update(1)
        curves: dict[str, list[dict[str, float]]] = {m: [{"n": 0, **seed_drift}] for m in METHODS}
        for method, n in runs:
            name = f"{method}_{n}"
            replay_n = round(n * s.replay_share / (1 - s.replay_share))
            spec = training_set(work, name, choose(method, candidates, n, s), replay,
                                replay_n, val)
            weights = fine_tune(spec, n + replay_n, s, work / "runs" / name)
            curves[method].append({"n": n, **map50(weights, test_drift, work / "runs" / name)})
            bar.update(1)

    target = round(0.9 * baseline["map50"], 4)
    reached = {m: labels_to(curves[m], target) for m in METHODS}
    met = reached["selected"] is not None and (
        reached["random"] is None or reached["selected"] < reached["random"])
    chosen = select_for_labelling(candidates, s.sizes[-1], min_distance=s.min_distance)
    result = {
        "bench": "label_efficiency", "scenario": SCENARIO, "pool": s.pool,
        "drift_share": s.drift_share,
        "selected_drift_share": round(sum(c.record_id.startswith("pool/") for c in chosen)
                                      / max(len(chosen), 1), 4),
        "baseline_map50": baseline["map50"], "target_map50": target,
        "labels_to_90pct": reached, "target_met": met, "curve": curves,
        "selected_uncertainty_mean": round(float(np.mean([c.uncertainty for c in chosen])), 4),
        "pool_uncertainty_mean": round(float(np.mean([c.uncertainty for c in candidates])), 4),
        "replay_share": s.replay_share, "image_epochs": s.image_epochs,
        "test_frames": s.test_frames,
        "seconds": round(time.monotonic() - started, 1),
    }
    if as_json:
        print(json.dumps(result))
        return
    print(f"baseline mAP50 {baseline['map50']:.3f}, target {target:.3f}")
    for method in METHODS:
        points = "  ".join(f"{p['n']:>3}: {p['map50']:.3f}" for p in curves[method])
        print(f"{method:>8}  {points}  -> labels to target: {reached[method]}")
    print(f"target met: {met} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
