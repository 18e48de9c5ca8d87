"""Write the offline settings every tool needs under var/: a font for Ultralytics, no sync."""

from __future__ import annotations

import argparse
from pathlib import Path

from flows.offline import use_offline_environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--var", type=Path, required=True, help="the project's var/ folder")
    var = parser.parse_args().var.resolve()
    use_offline_environment(var)
    for sub in ("prefect", "dvc-remote", "ultralytics"):
        (var / sub).mkdir(parents=True, exist_ok=True)
    from flows.retrain.ultralytics_yolo import quiet_settings

    quiet_settings(datasets_dir=str(var / "datasets"), runs_dir=str(var / "runs"),
                   weights_dir=str(var / "weights"))
    print(f"offline settings written under {var}")


if __name__ == "__main__":
    main()
