"""Closed-loop benchmark: the A/B simulation on the demo world for at least 7 simulated days.

    python -m benchmarks.closed_loop [--days 7] [--profile demo] [--retrain airflow] [--time-limit 1200]

Runs :func:`loop.study.run_study` (variants ``on`` and ``off``, the off-policy check) and writes
``reports/bench/closed_loop.json``: the headline A/B lifts with their intervals and SRM per domain,
the feedback-loop health means per variant, the off-policy estimate next to the simulated truth,
and the wall time per simulated day and per night. ``--time-limit`` stops starting new days (the
report says how many ran); the full reports go to ``reports/loop/``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from common.paths import REPO_ROOT

OUT = REPO_ROOT / "reports" / "bench" / "closed_loop.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.closed_loop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="demo",
                        help="synthetic world profile (tiny, demo, bench) (default: %(default)s)")
    parser.add_argument("--days", type=int, default=7,
                        help="simulated days per variant (default: %(default)s)")
    parser.add_argument("--retrain", default="airflow", choices=("airflow", "fast", "none"),
                        help="nightly retraining: the Airflow DAG with its promotion gate, the same jobs "
                             "called directly (fast), or none (default: %(default)s)")
    parser.add_argument("--training-days", type=int, default=7,
                        help="days of events each night's training reads (default: %(default)s)")
    parser.add_argument("--max-requests", type=int, default=None,
                        help="cap on slate requests per domain and day")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="seconds after which no new day starts")
    parser.add_argument("--variants", nargs="+", default=["on", "off"],
                        help="re-ranking variants to compare (on: the configured rules; off: no exploration, "
                             "no diversity cap) (default: %(default)s)")
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / "data" / "loop-bench",
                        help="where the study's worlds, releases and reports are written "
                             "(default: %(default)s)")
    args = parser.parse_args(argv)
    # The loop (TensorFlow, Spark, serving) loads after parsing, so that ``--help`` answers at once.
    from loop.simulate import LoopSettings
    from loop.study import StudySettings, run_study

    started = time.perf_counter()
    settings = StudySettings(
        loop=LoopSettings(profile=args.profile, days=args.days, retrain=args.retrain, training_days=args.training_days,
                          max_requests_per_day=args.max_requests, time_limit_s=args.time_limit),
        work_dir=args.work_dir.resolve(), variants=tuple(args.variants),
    )
    result = run_study(settings)
    report = {
        "profile": args.profile, "days_requested": args.days, "retrain": args.retrain,
        "days_run": {v: len({d.day for d in r.days}) for v, r in result.runs.items()},
        "requests": {v: sum(d.requests for d in r.days) for v, r in result.runs.items()},
        "events": {v: sum(d.events for d in r.days) for v, r in result.runs.items()},
        "seconds_per_day": {v: [d.seconds for d in r.days] for v, r in result.runs.items()},
        "nights": {v: [n.as_dict() for n in r.nights] for v, r in result.runs.items()},
        "ab_headline": {d: ab.headline_rows() for d, ab in result.ab.items()},
        "ope": [c.as_dict() for c in result.ope],
        "health": json.loads((settings.report_dir / "health.json").read_text())
        if (settings.report_dir / "health.json").exists() else [],
        "seconds": round(time.perf_counter() - started, 1),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(result.ab_text)
    print(f"wrote {OUT} ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
