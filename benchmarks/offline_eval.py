"""End-to-end offline evaluation benchmark: MovieLens + both synthetic domains + the position-bias experiment.

Generates the synthetic world of a profile (``tiny`` by default; ``demo`` for the main figures when
there is time), runs the Spark jobs that turn it into features and training sets, then
:func:`experiments.offline_report.run_offline_evaluation`: per domain the baselines, each retriever alone,
the merged candidate set and retrieval -> ranking on one temporal split; on the synthetic domains the
corrected vs uncorrected ranker against true relevance. Writes ``reports/offline/`` (Markdown + PNG)
and ``reports/bench/offline_eval.json``.

    python -m benchmarks.offline_eval [--profile tiny|demo] [--data-dir DIR (reuse a prepared world)]
        [--domains retail,banking] [--skip-position-bias]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from common.paths import REPO_ROOT, DataPaths

OUT_FILE = REPO_ROOT / "reports" / "bench" / "offline_eval.json"
REPORT_DIR = REPO_ROOT / "reports" / "offline"
DOMAINS = ("movielens", "retail", "banking")


def prepare_world(paths: DataPaths, profile: str, seed: int = 42) -> dict[str, str]:
    """Generate the synthetic world, compact the lake, compute features and training sets (Spark)."""
    from simulation.generate import generate
    from simulation.profiles import get_profile
    from spark_jobs import compact, features, training_sets
    from spark_jobs.session import build_session

    spec = get_profile(profile)
    generate(profile, seed, paths, progress=False)
    first, lake_last = spec.start_date, spec.start_date + timedelta(days=spec.days - 2)  # last day is "incoming"
    root = ["--data-dir", str(paths.root)]
    session = build_session("recsys-offline-eval", shuffle_partitions=4)
    try:
        for main, argv in ((compact.main, ["--date", first.isoformat(), "--end", lake_last.isoformat()]),
                           (features.main, ["--date", lake_last.isoformat(), "--days", str(spec.days - 1)]),
                           (training_sets.main, ["--start", first.isoformat(), "--end", lake_last.isoformat()])):
            if main([*argv, *root]) != 0:
                raise RuntimeError(f"{main.__module__} failed")
    finally:
        session.stop()
    return {"profile": profile, "first": first.isoformat(), "last": lake_last.isoformat()}


def run(profile: str = "tiny", data_dir: Path | None = None, report_dir: Path = REPORT_DIR,
        domains: tuple[str, ...] = DOMAINS, position_bias: bool = True) -> dict[str, Any]:
    """Prepare (or reuse) the world, evaluate every domain, write the report; returns the figures."""
    from experiments.offline_report import SYNTHETIC, run_offline_evaluation

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="offline-eval-data-") as scratch:
        paths = DataPaths((data_dir or Path(scratch) / "data").resolve())
        if data_dir:
            world = {"profile": profile, "reused": str(paths.root)}
        elif set(domains) & set(SYNTHETIC):
            world = prepare_world(paths, profile)
        else:
            world = {"profile": None}  # MovieLens only: nothing to generate
        prepared = time.perf_counter()
        figures = run_offline_evaluation(report_dir, paths, domains, progress=lambda msg: print(msg, flush=True),
                                         position_bias=position_bias)
    return {"world": world, "prepare_s": round(prepared - started, 1),
            "evaluate_s": round(time.perf_counter() - prepared, 1), **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="tiny", help="synthetic world profile (tiny, demo)")
    parser.add_argument("--data-dir", type=Path, default=None, help="a prepared world to reuse (skips generation)")
    parser.add_argument("--domains", default=",".join(DOMAINS), help="comma-separated subset of %(default)s")
    parser.add_argument("--skip-position-bias", action="store_true",
                        help="leave out the corrected-vs-uncorrected ranker experiment (python -m experiments.position_bias)")
    args = parser.parse_args()
    domains = tuple(d.strip() for d in args.domains.split(",") if d.strip())
    unknown = sorted(set(domains) - set(DOMAINS))
    if unknown:
        parser.error(f"unknown domain(s) {unknown}; choose from {DOMAINS}")
    result = run(args.profile, args.data_dir, domains=domains, position_bias=not args.skip_position_bias)
    OUT_FILE.parent.mkdir(parents=True, exist_ok=True)
    OUT_FILE.write_text(json.dumps(result, indent=1, default=str))
    print(f"wrote {OUT_FILE} and {REPORT_DIR}")


if __name__ == "__main__":
    main()
