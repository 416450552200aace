"""``make bench``: run every benchmark, one process each, and index their reports.

Each benchmark module writes its own machine-readable report to ``reports/bench/<name>.json``;
this runner records which ran, their exit status and wall time in ``reports/bench/index.json``.
Benchmarks run one after another (never in parallel: ratios are measured side by side inside one
benchmark, and the machine has two cores).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
REPORTS = REPO_ROOT / "reports" / "bench"
BENCHMARKS = ("ranker", "query_tower", "scann_index", "feature_store", "streaming", "serving_load", "overload",
              "platform_load", "offline_eval", "own_data", "scale", "materialize")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=BENCHMARKS, help="run only these benchmarks")
    args = parser.parse_args(argv)
    REPORTS.mkdir(parents=True, exist_ok=True)
    index: dict[str, dict] = {}
    failed = 0
    for name in args.only or BENCHMARKS:
        if not (REPO_ROOT / "benchmarks" / f"{name}.py").exists():
            continue
        print(f"==> benchmark {name}", flush=True)
        started = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", f"benchmarks.{name}"], cwd=REPO_ROOT)
        seconds = round(time.perf_counter() - started, 1)
        index[name] = {"exit_code": code, "seconds": seconds, "report": f"reports/bench/{name}.json"}
        print(f"    {name}: exit {code} in {seconds} s", flush=True)
        failed += code != 0
    (REPORTS / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    print(f"reports in {REPORTS}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
