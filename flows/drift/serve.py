"""Serve the `drift-check` flow on a schedule: `python -m flows.drift.serve --interval 3600`.

Reads EDGELOOP_HUB_URL and EDGELOOP_ADMIN_TOKEN at each run; state stays under var/.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from flows.offline import use_offline_environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--interval", type=int, default=3600, help="seconds between runs")
    parser.add_argument("--var", type=Path, default=Path("var"), help="runtime state folder")
    args = parser.parse_args()
    use_offline_environment(args.var)  # before Prefect is imported
    from flows.drift.flow import serve_drift_check

    serve_drift_check(args.interval)


if __name__ == "__main__":
    main()
