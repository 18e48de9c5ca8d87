"""How fast the synthetic line renders frames (it is the demo's camera and the tests' data).

Prints JSON: milliseconds per frame (median over the run) at each width.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from sim.stream import stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=60, help="timed frames at each width")
    parser.add_argument("--json", action="store_true",
                        help="accepted for `make bench`: the output is one JSON line anyway")
    frames = parser.parse_args().frames
    if frames < 1:
        parser.error("--frames must be >= 1")
    result: dict[str, object] = {"bench": "sim_render", "frames": frames}
    for width in (320, 640):
        times = []
        it = stream("baseline", seed=0, width=width, frames=frames + 5, name="bench")
        for i in range(frames + 5):
            start = time.perf_counter()
            next(it)
            if i >= 5:  # warm-up frames are not counted
                times.append((time.perf_counter() - start) * 1000)
        result[f"ms_per_frame_{width}"] = round(statistics.median(times), 2)
        result[f"fps_{width}"] = round(1000 / statistics.median(times), 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
