"""Int8 export of the seed weights: speed-up over fp32, mAP lost, ONNX Runtime against PyTorch,
and how close fp32 inference comes to the CPU's peak.

Exports fp32 ONNX (dynamic input size) and its static int8 copy into a temp folder, times the
ONNX Runtime call through the device's `Detector.infer` and the fused PyTorch model on the same
letterboxed tensors, all with the same thread count, and scores both ONNX files on a rendered,
labelled baseline test set. Progress goes to stderr; `--json` prints one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flows.offline import use_offline_environment  # noqa: E402

TARGETS = {  # name: (comparison, bound)
    "int8_speedup": (">=", 1.7),
    "int8_map50_95_drop": ("<=", 1.0),
    "ort_vs_torch_speedup": (">=", 1.3),
}
WARMUP_RUNS = 20  # ONNX Runtime and PyTorch both settle only after a dozen or more runs
ROUNDS = 3  # each backend times every frame once per round; rounds alternate the backends


def log(message: str) -> None:
    print(f"bench export: {message}", file=sys.stderr, flush=True)


def cpu_description() -> dict[str, Any]:
    """Model string, clock and FLOPs per cycle per core, read from /proc/cpuinfo."""
    info: dict[str, str] = {}
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    flags = set(info.get("flags", "").split())
    vendor, family = info.get("vendor_id", ""), int(info.get("cpu family", "0") or 0)
    if "avx512f" in flags and vendor == "AuthenticAMD" and family == 25:
        per_cycle, why = 32, ("Zen 4: AVX-512 runs on two 256-bit FMA pipes (2 x 8 lanes x 2), "
                              "no more than AVX2+FMA")
    elif "avx512f" in flags:
        per_cycle, why = 64, "AVX-512, assumed two 512-bit FMA units (2 x 16 lanes x 2)"
    elif {"avx2", "fma"} <= flags:
        per_cycle, why = 32, "AVX2+FMA, two 256-bit FMA units (2 x 8 lanes x 2)"
    else:
        per_cycle, why = 16, "no FMA: one 256-bit add and one multiply per cycle"
    return {"cpu_model": info.get("model name", platform.processor() or "unknown"),
            "cpu_vendor": vendor, "cpu_family": family, "cpu_mhz": float(info.get("cpu MHz", 0)),
            "fp32_flops_per_cycle": per_cycle,
            "peak_assumption": f"{why}; base clock from /proc/cpuinfo (turbo not counted)"}


def render_frames(width: int, frames: int, seed: int) -> list[np.ndarray]:
    from sim.stream import stream

    return [f.image for f in stream("baseline", seed=seed, width=width, frames=frames,
                                    name="bench_export")]


def latencies(fp32: Path, int8: Path, weights: Path, images: list[np.ndarray], imgsz: int,
              threads: int) -> dict[str, list[float]]:
    """Per-frame ms of ONNX Runtime fp32 and int8 (`Detector.infer`'s `session.run` time) and of
    the PyTorch model, on the same letterboxed tensors, warm-up excluded.

    Backends take turns a whole pass at a time: interleaving single frames would let one
    runtime's spinning worker threads steal the cores from the next one's call.
    """
    import torch

    from edge_runtime.detector import Detector
    from flows.retrain.onnx_export import load_torch_model

    detectors = {name: Detector(path, imgsz=imgsz, threads=threads)
                 for name, path in (("fp32", fp32), ("int8", int8))}
    prepared = [detectors["fp32"].prepare(image) for image in images]
    model = load_torch_model(weights)
    torch.set_num_threads(threads)  # after loading: Ultralytics' device selection resets it

    def torch_ms(tensor: np.ndarray) -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            model(torch.from_numpy(tensor))
        return (time.perf_counter() - t0) * 1000

    runners: dict[str, Callable[[int], float]] = {
        "fp32": lambda i: detectors["fp32"].infer(prepared[i]).infer_ms,
        "int8": lambda i: detectors["int8"].infer(prepared[i]).infer_ms,
        "torch": lambda i: torch_ms(prepared[i].tensor),
    }
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for run in runners.values():
        for i in range(WARMUP_RUNS):
            run(i % len(prepared))
    for round_ in range(ROUNDS):
        log(f"timing round {round_ + 1}/{ROUNDS}")
        for name, run in runners.items():
            samples[name] += [run(i) for i in range(len(prepared))]
    return samples


def accuracy(models: dict[str, Path], folder: Path, imgsz: int, threads: int) -> dict[str, Any]:
    from flows.retrain.onnx_eval import evaluate_onnx

    return {name: evaluate_onnx(path, folder, imgsz=imgsz, threads=threads).scores
            for name, path in models.items()}


def fp32_flops(weights: Path, shape: tuple[int, ...]) -> float:
    """FLOPs (2 per multiply-add) of one forward pass at the given input shape."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from flows.retrain.onnx_export import load_torch_model

    model = load_torch_model(weights)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(torch.zeros(shape))
    return float(counter.get_total_flops())


def summary(ms: list[float]) -> dict[str, float]:
    return {"mean_ms": round(statistics.fmean(ms), 2), "p50_ms": round(statistics.median(ms), 2)}


def targets(values: dict[str, float]) -> dict[str, dict[str, Any]]:
    out = {}
    for name, (op, bound) in TARGETS.items():
        met = values[name] >= bound if op == ">=" else values[name] <= bound
        out[name] = {"value": values[name], "target": f"{op} {bound}", "met": bool(met)}
    return out


def run_bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from flows.retrain.onnx_export import quantize_int8
    from flows.retrain.ultralytics_yolo import export_onnx
    from sim.dataset import render_dataset

    threads = args.threads or os.cpu_count() or 1
    load_at_start = round(os.getloadavg()[0], 2)  # other work on the machine skews timings
    weights = work / "best.pt"  # Ultralytics writes its export beside the weights
    shutil.copyfile(args.weights, weights)
    log(f"exporting fp32 ONNX at {args.imgsz}")
    fp32 = export_onnx(weights, work / "model.onnx", args.imgsz, dynamic=True)
    log(f"rendering {args.calib_frames} calibration frames")
    render_dataset(work / "calib", "baseline", args.calib_frames, seed=args.seed + 1,
                   width=args.imgsz, split="calib")
    log("quantising to int8")
    t0 = time.perf_counter()
    int8 = quantize_int8(fp32, work / "model.int8.onnx",
                         sorted((work / "calib" / "images").glob("*.jpg")), args.imgsz)
    quantise_s = time.perf_counter() - t0
    log(f"rendering {args.frames} timing frames and {args.eval_frames} labelled test frames")
    images = render_frames(args.imgsz, args.frames, args.seed)
    render_dataset(work / "test", "baseline", args.eval_frames, seed=args.seed + 2,
                   width=args.imgsz, split="test")
    ms = latencies(fp32, int8, weights, images, args.imgsz, threads)
    log("scoring fp32 and int8 on the test frames")
    scores = accuracy({"fp32": fp32, "int8": int8}, work / "test", args.imgsz, threads)

    from edge_runtime.detector import Detector

    shape = Detector(fp32, imgsz=args.imgsz, threads=1).prepare(images[0]).tensor.shape
    flops = fp32_flops(weights, shape)
    cpu = cpu_description()
    fp32_p50, int8_p50, torch_p50 = (statistics.median(ms[k]) for k in ("fp32", "int8", "torch"))
    peak = threads * cpu["cpu_mhz"] / 1000 * cpu["fp32_flops_per_cycle"]
    achieved = flops / 1e9 / (fp32_p50 / 1000)
    values = {
        "int8_speedup": round(fp32_p50 / int8_p50, 2),
        "int8_map50_95_drop": round(100 * (scores["fp32"].map50_95 - scores["int8"].map50_95), 2),
        "ort_vs_torch_speedup": round(torch_p50 / fp32_p50, 2),
    }
    return {
        "bench": "export",
        "weights": str(args.weights), "imgsz": args.imgsz, "input_shape": list(shape),
        "frames": args.frames, "eval_frames": args.eval_frames,
        "calib_frames": args.calib_frames, "seed": args.seed, "threads": threads,
        "warmup_runs": WARMUP_RUNS, "rounds": ROUNDS, "loadavg_1m_at_start": load_at_start,
        "speed_basis": "p50 of per-frame ms",
        "evaluator": "flows.retrain.onnx_eval (device Detector)",
        "quantise_s": round(quantise_s, 1),
        "latency": {k: summary(v) for k, v in ms.items()},
        "map50_95": {k: round(100 * s.map50_95, 2) for k, s in scores.items()},
        "map50": {k: round(100 * s.map50, 2) for k, s in scores.items()},
        **values,
        "fp32_gflops": round(flops / 1e9, 3),
        "fp32_gflops_per_s": round(achieved, 1),
        "cpu_peak_gflops": round(peak, 1),
        "fp32_share_of_peak": round(achieved / peak, 3),
        **cpu,
        "targets": targets(values),
    }


def table(result: dict[str, Any]) -> str:
    lat, m = result["latency"], result["map50_95"]
    rows = [
        ("input", f"{'x'.join(map(str, result['input_shape']))}, {result['threads']} threads, "
                  f"{result['frames']} frames x {result['rounds']} rounds"),
        ("fp32 ORT ms (p50 / mean)", f"{lat['fp32']['p50_ms']} / {lat['fp32']['mean_ms']}"),
        ("int8 ORT ms (p50 / mean)", f"{lat['int8']['p50_ms']} / {lat['int8']['mean_ms']}"),
        ("PyTorch ms (p50 / mean)", f"{lat['torch']['p50_ms']} / {lat['torch']['mean_ms']}"),
        ("mAP50-95 fp32 / int8", f"{m['fp32']} / {m['int8']} ({result['eval_frames']} frames)"),
        ("fp32 GFLOP/s / CPU peak", f"{result['fp32_gflops_per_s']} / {result['cpu_peak_gflops']}"
                                    f" ({100 * result['fp32_share_of_peak']:.1f}%)"),
    ]
    rows += [(name, f"{t['value']} (target {t['target']}: {'met' if t['met'] else 'NOT met'})")
             for name, t in result["targets"].items()]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=ROOT / "tests/fixtures/seed_best.pt")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--frames", type=int, default=50, help="baseline frames to time on")
    parser.add_argument("--eval-frames", type=int, default=100, help="labelled frames for mAP")
    parser.add_argument("--calib-frames", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="0 = one per core")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print only one JSON object")
    args = parser.parse_args()
    if not args.weights.is_file():
        sys.exit(f"bench export: weights {args.weights} do not exist")
    for name in ("frames", "eval_frames", "calib_frames"):
        if getattr(args, name) < 1:
            sys.exit(f"bench export: --{name.replace('_', '-')} must be >= 1")
    use_offline_environment(ROOT / "var")
    # Ultralytics logs to stdout; with --json, stdout carries the one JSON object only.
    with tempfile.TemporaryDirectory(prefix="bench_export-") as work, \
            contextlib.redirect_stdout(sys.stderr):
        result = run_bench(args, Path(work))
    result["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result) if args.json else table(result))


if __name__ == "__main__":
    main()
