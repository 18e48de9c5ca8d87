"""The benches' models as ONNX files, built from the trained seed checkpoint and cached under var/:
the 3-class seed model as shipped, and the same network widened to COCO's 80 class names.

No pretrained 80-class weights can be had offline, and an 80-class model trained on the
simulator's three parts would never name the other 77. So the 80-class model is the seed
network (every trained weight kept) with an 80-channel class head: its three trained class rows
in three channels, and 77 clones of them (the trained row plus noise, with a lower bias) that win
a box now and then, each at its own rate. Its telemetry on the line has what a big model's has in
a narrow deployment: three busy count_* columns and 77 sparse ones, most zero on most frames.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flows.offline import use_offline_environment  # noqa: E402

RECIPE = "clones-v2"  # bump when the widening changes: the cache key
CLASSES = 80
NOISE = 0.5  # a clone's weight noise, in units of its parent row's standard deviation
# How rarely a clone beats its parent: its bias puts it this many standard deviations (of its
# logit's difference from the parent's, on the parent's confident anchors) below, spread evenly
# over the clones: the first win a few percent of those anchors, the last almost none.
RARITY = (2.0, 5.0)
CALIBRATION_FRAMES = 32  # rendered from a stream of their own, never one a bench measures
CONF = 0.25  # the device's default detection threshold: the anchors that can become boxes


def coco_names(seed_names: tuple[str, ...]) -> tuple[str, ...]:
    """COCO's 80 names, the first len(seed_names) replaced by the seed model's classes."""
    import yaml
    from ultralytics.utils import ROOT as ULTRALYTICS

    coco = yaml.safe_load((ULTRALYTICS / "cfg/datasets/coco.yaml").read_text())["names"]
    names = [str(coco[i]) for i in range(CLASSES)]
    names[:len(seed_names)] = seed_names
    if len(set(names)) != CLASSES:
        raise ValueError(f"the seed's class names {seed_names} clash with COCO's")
    return tuple(names)


def widen(seed: Any, names: tuple[str, ...], images: Any, rng_seed: int = 0) -> Any:
    """A DetectionModel of the seed's architecture with len(names) classes: every seed weight
    whose shape matches is copied, the seed's class branch is embedded exactly in the wider one
    (extra channels held at zero), and the class rows are the seed's followed by clones whose
    biases are set on `images` (network inputs, N x 3 x H x W in 0..1)."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    wide = DetectionModel(dict(seed.yaml, nc=len(names)), verbose=False)
    target = wide.state_dict()
    for key, value in seed.state_dict().items():
        if key in target and target[key].shape == value.shape:
            target[key] = value.clone()
    wide.load_state_dict(target)
    features = _class_features(seed, images)
    generator = torch.Generator().manual_seed(rng_seed)
    with torch.no_grad():
        for old, new, f in zip(seed.model[-1].cv3, wide.model[-1].cv3, features, strict=True):
            _embed_branch(old, new)
            _clone_rows(old[2], new[2], f, generator)
    wide.names = dict(enumerate(names))
    wide.args = getattr(seed, "args", {})
    wide.stride = seed.stride
    return wide.eval()


def _class_features(model: Any, images: Any) -> list[Any]:
    """The input of each scale's last class conv (N x C x h x w), on `images`."""
    import torch

    seen: list[Any] = []
    hooks = [branch[2].register_forward_hook(lambda _m, args, _out: seen.append(args[0]))
             for branch in model.model[-1].cv3]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def _embed_branch(old: Any, new: Any) -> None:
    """new = [[DWConv, Conv], [DWConv, Conv], Conv2d] with c3 >= old's channels: the extra
    channels get zero weights and a batch norm that maps 0 to 0 (SiLU(0) = 0), so the first
    channels compute exactly what the seed's branch did."""
    for old_block, new_block in zip(old[:2], new[:2], strict=True):
        for old_conv, new_conv in zip(old_block, new_block, strict=True):
            w, n = old_conv.conv.weight, new_conv.conv.weight
            n.zero_()
            n[:w.shape[0], :w.shape[1]] = w
            bn_old, bn_new = old_conv.bn, new_conv.bn
            bn_new.weight.fill_(1.0)
            bn_new.bias.zero_()
            bn_new.running_mean.zero_()
            bn_new.running_var.fill_(1.0)
            k = bn_old.weight.shape[0]
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(bn_new, name)[:k] = getattr(bn_old, name)


def _clone_rows(old: Any, new: Any, features: Any, generator: Any) -> None:
    """The seed's class rows first, then clones: clone j copies trained row j mod 3 plus noise,
    its bias set so that it beats its parent on a share of the parent's confident anchors that
    falls from the first clone to the last (`RARITY`)."""
    import torch

    trained, width = old.weight.shape[:2]
    new.weight.zero_()
    new.bias.zero_()
    new.weight[:trained, :width] = old.weight
    new.bias[:trained] = old.bias
    f = features.permute(1, 0, 2, 3).reshape(width, -1)  # channels x anchors
    parent_logits = old.weight[:, :, 0, 0] @ f + old.bias[:, None]
    clones = new.weight.shape[0] - trained
    for j, rarity in enumerate(torch.linspace(*RARITY, clones).tolist()):
        parent = j % trained
        row = old.weight[parent, :, 0, 0]
        noise = torch.randn(row.shape, generator=generator) * row.std() * NOISE
        confident = parent_logits[parent] > torch.logit(torch.tensor(CONF))
        shift = noise @ f[:, confident] if confident.any() else torch.zeros(2)
        new.weight[trained + j, :width, 0, 0] = row + noise
        new.bias[trained + j] = old.bias[parent] - shift.mean() - rarity * shift.std()


def _check_trained_outputs(seed: Any, wide: Any, images: Any) -> None:
    """The widened model's boxes and trained classes must be the seed's, to float precision."""
    import torch

    with torch.no_grad():
        before, after = seed(images)[0], wide(images)[0]
    kept = before.shape[1]  # 4 box coordinates + the trained classes
    gap = float((before - after[:, :kept]).abs().max())
    if gap > 1e-5:
        raise ValueError(f"the widened model's trained outputs differ from the seed's by {gap}")


def _calibration_images(imgsz: int) -> Any:
    """Baseline frames letterboxed as the device does (dynamic input: the stride multiple)."""
    import numpy as np
    import torch

    from edge_runtime.detector import letterbox
    from sim.stream import stream

    frames = stream("baseline", seed=0, width=imgsz, frames=CALIBRATION_FRAMES,
                    name="widen-calibration")
    return torch.from_numpy(np.concatenate([letterbox(f.image, (imgsz, imgsz), 32, auto=True)[0]
                                            for f in frames]))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def bench_models(seed_weights: Path, cache: Path, imgsz: int = 320) -> dict[int, Path]:
    """{classes: ONNX file} for the seed (3 classes) and its 80-class widening, exported as the
    seed_export stage does (dynamic input, Ultralytics' opset and cleanup) and cached by the
    checkpoint's hash and the recipe."""
    import torch

    from flows.retrain.ultralytics_yolo import export_onnx

    folder = cache / f"{_digest(seed_weights)}-{RECIPE}"
    out = {3: folder / "seed3.onnx", CLASSES: folder / f"wide{CLASSES}.onnx"}
    if all(p.is_file() for p in out.values()):
        return out
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = torch.load(seed_weights, map_location="cpu", weights_only=False)
    seed = (checkpoint.get("ema") or checkpoint["model"]).float().eval()
    names = tuple(seed.names[i] for i in sorted(seed.names))
    wide_pt = folder / f"wide{CLASSES}.pt"
    images = _calibration_images(imgsz)
    wide = widen(seed, coco_names(names), images)
    _check_trained_outputs(seed, wide, images)
    torch.save({**checkpoint, "model": wide, "ema": None, "optimizer": None}, wide_pt)
    seed_pt = folder / "seed3.pt"
    seed_pt.write_bytes(seed_weights.read_bytes())
    for classes, weights in ((3, seed_pt), (CLASSES, wide_pt)):
        export_onnx(weights, out[classes], imgsz, dynamic=True, quiet=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=Path, default=ROOT / "tests/fixtures/seed_best.pt")
    parser.add_argument("--models", type=Path, default=ROOT / "var/drift_many_classes")
    parser.add_argument("--json", action="store_true", help="print only the JSON document")
    args = parser.parse_args()
    use_offline_environment(ROOT / "var")
    models = bench_models(args.weights, args.models)
    document = {"bench": "many_class_model", "recipe": RECIPE,
                "models": {str(k): {"path": str(p), "sha256": _digest(p)}
                           for k, p in models.items()}}
    print(json.dumps(document) if args.json else json.dumps(document, indent=1))


if __name__ == "__main__":
    main()
