"""Stage `profile`: the release's reference telemetry: the file the gate chose, run through the
device's exact pipeline (`edge replay`) over the newest labelled frames (the line as it is now),
one FrameStats row each with the objects its label holds (`labelled_objects`) and, with
`--previous`, the detections of the model it replaces on the same frame (`previous_detections`):
the canary compares the two on the line as they compared here."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_runtime.detector import Detector
from edge_runtime.replay import replay_rows, write_parquet
from edge_runtime.sources import image_frames
from flows.checks import GateReport
from flows.retrain.stages.params import stage_params
from flows.yolo_dataset import IMAGE_SUFFIXES, PREVIOUS_DETECTIONS, add_labelled_objects

KEYS = {"imgsz"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--gate", type=Path, required=True, help="metrics/gate.json")
    parser.add_argument("--images", type=Path, required=True, help="image folder to replay")
    parser.add_argument("--previous", type=Path,
                        help="the ONNX model the release replaces (the champion), replayed on "
                             "the same images for the canary's comparison")
    parser.add_argument("--out", type=Path, required=True, help="Parquet file to write")
    args = parser.parse_args(argv)
    p = stage_params(args.params, "profile", KEYS)
    gate = GateReport.read(args.gate)
    artefact = gate.artefact or "fp32"  # a refused candidate is profiled as fp32 all the same
    file = gate.files.get(artefact)
    if file is None:
        raise SystemExit(f"{args.gate}: no {artefact} file in the gate's files")
    model = Path(file)
    detector = Detector(model, imgsz=p["imgsz"])
    images = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise SystemExit(f"{args.images}: no images to replay")
    rows = replay_rows(detector, image_frames(images), device_id="reference")
    add_labelled_objects(rows, images)
    if args.previous is not None:
        previous = replay_rows(Detector(args.previous, imgsz=p["imgsz"]), image_frames(images),
                               device_id="previous")
        found = {row["source_name"]: row["detections"] for row in previous}
        for row in rows:
            row[PREVIOUS_DETECTIONS] = found.get(row["source_name"])
    write_parquet(rows, args.out)
    also = f" (and {args.previous}, the version it replaces)" if args.previous else ""
    print(f"reference telemetry: {len(rows)} frames through {artefact} {model}{also} "
          f"-> {args.out}", flush=True)


if __name__ == "__main__":
    main()
