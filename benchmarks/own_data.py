"""Own-data benchmark (issue 14): the README's "your own data" walkthrough on MovieLens latest-small,
judged on a held-out future the platform never sees.

Split (one global time cut, never random): the cut is the UTC midnight that starts the day of the
``1 - --holdout-fraction`` quantile of the event timestamps, so the last ~10% of the timeline's events
(by time, a little more since the cut is a day boundary) are held out. The files the user imports hold
only what existed before the cut: events before it, catalog items launched before it, users signed up
before it. The night runs for the lake's newest day -- the last day with events before the cut --
over all history (``--training-days all``).

Steps, as a user types them (each a subprocess in a scratch folder: ``RECSYS_DATA_DIR``,
``RECSYS_ARTIFACTS_DIR`` and ``RECSYS_DOMAINS_FILE`` -- a copy of ``config/domains.yaml`` -- point
there; nothing touches the repository's ``config/`` or ``data/``)::

    python -m ingest.movielens_csv --out FULL --domain films --id-prefix f_    # whole history (1995-2016)
    (the benchmark cuts FULL into OWN = before the cut, and HELDOUT)
    recsys domain add films --id-prefix f_ --event-types view,purchase --positive view=1,purchase=4 \\
        --conversion purchase --no-impressions \\
        --quality min_rows=1 --quality max_staleness_hours=24 --quality volume_lookback_days=0
    recsys data import --events OWN/events.csv --catalog OWN/catalog.csv --users OWN/users.csv
    recsys airflow nightly --training-days all
    recsys serving serve --port P --domains films

Each step's wall time and the peak RSS of its process tree (psutil, polled every 0.5 s: the sum over
the process and all its descendants -- Airflow's task runners, spark-submit's JVMs -- and the largest
single process) are recorded; for the night also every Airflow task's wall time (the run's table).

Evaluation, on the held-out events (one ground truth, one metric implementation,
:mod:`models.evaluation.evaluate`): relevant = held-out ``purchase`` events (rating >= 4; ``--relevant
all`` counts every positive event, views included) on items of the pre-cut catalog, excluding items
the user had any event with before the cut; users = held-out users with >= 1 relevant item, split into
those with history before the cut (the headline) and those without (cold start). Recommenders, k=10:

* ``served``: the running service, ``POST /v1/recommendations`` per user (the full pipeline:
  retrievers, ranker, re-ranking rules -- exploration slots included, so served figures move a little
  between runs);
* ``retriever:<name>``: each retriever of the published release alone (``models.retrieval.candidates.retrieve``
  on ``artifacts/films/<CURRENT>/retrieval``; items seen before the cut left out);
* ``ease`` (L2 tuned on the last part of the pre-cut data) and ``popularity``, fitted on the pre-cut data.

A stage that fails is recorded with its reason, the stages that need it are marked as not run, and the
script exits 1. Writes ``reports/bench/own_data.json`` and prints Markdown tables.

    python -m benchmarks.own_data [--last-days 90 (a small sample, to check the script)] [--workdir DIR]
        [--evaluate-only (reuse DIR's night)] [--holdout-fraction 0.1] [--relevant purchase|all]
        [--served-rounds 5]

On this 2-core machine, busy with other work, the whole history's night took ~19 minutes and peaked
at ~5.8 GB RSS (process tree); the 90-day sample's night ~17 minutes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks import report
from benchmarks.own_data_eval import (
    METRICS,
    Evaluation,
    K,
    cut_point,
    evaluate_baselines,
    evaluate_retrievers,
    event_times,
    published_release,
    read_csv,
    release_facts,
    serve_and_ask,
)
from benchmarks.own_data_night import gate_decision, night_problems, night_tasks, night_tasks_from_db
from benchmarks.process_steps import (
    Step,
    exit_text,
    not_run,
    run_command,
    run_inline,
    say,
)
from common.paths import REPO_ROOT

OUT_FILE = REPO_ROOT / "reports" / "bench" / "own_data.json"
STEPS_FILE = "steps.json"


def write_split(full: Path, own: Path, heldout: Path, holdout_fraction: float) -> dict[str, Any]:
    """Cut the user's whole-history CSVs at :func:`cut_point`: ``own`` gets what existed before the cut
    (the files the user imports), ``heldout/events.csv`` the events from the cut on."""
    events, catalog, users = (read_csv(full / f"{name}.csv") for name in ("events", "catalog", "users"))
    times = event_times(events["timestamp"])
    cut = cut_point(events["timestamp"], holdout_fraction)
    before = times < cut
    if before.all() or not before.any():
        raise ValueError(f"the cut {cut} leaves nothing {'held out' if before.all() else 'to train on'}")
    parts = {
        own / "events.csv": events[before],
        own / "catalog.csv": catalog[event_times(catalog["launched_at"]) < cut],
        own / "users.csv": users[event_times(users["signed_up_at"]) < cut],
        heldout / "events.csv": events[~before],
    }
    for path, frame in parts.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)
    held_times, kept_times = times[~before], times[before]
    ratings = events["event_type"] == "view"  # MovieLens: one view per rating
    return {
        "rule": f"cut = UTC midnight starting the day of the {1 - holdout_fraction:.0%} quantile of event times; "
                "held out = every event at or after the cut",
        "holdout_fraction_asked": holdout_fraction,
        "cut": str(cut),
        "night_logical_date": str(kept_times.max().date()),
        "train_period": [str(kept_times.min()), str(kept_times.max())],
        "heldout_period": [str(held_times.min()), str(held_times.max())],
        "events": {"total": len(events), "before_cut": int(before.sum()), "heldout": int((~before).sum()),
                   "heldout_share": round(float((~before).mean()), 4)},
        "ratings": {"before_cut": int((ratings & before).sum()), "heldout": int((ratings & ~before).sum())},
        "catalog": {"total": len(catalog), "before_cut": len(parts[own / "catalog.csv"])},
        "users": {"total": len(users), "before_cut": len(parts[own / "users.csv"]),
                  "heldout_users": int(events.loc[~before, "user_id"].nunique()),
                  "heldout_users_with_history": int(np.isin(events.loc[~before, "user_id"].unique(),
                                                            events.loc[before, "user_id"].unique()).sum())},
    }


# ---- the run -----------------------------------------------------------------------------------


@dataclass
class Workdir:
    root: Path

    @property
    def full(self) -> Path:
        return self.root / "movielens_full"

    @property
    def own(self) -> Path:
        return self.root / "own_data"

    @property
    def heldout(self) -> Path:
        return self.root / "heldout"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def env(self) -> dict[str, str]:
        python = sys.executable
        return {**os.environ, "RECSYS_DATA_DIR": str(self.data), "RECSYS_ARTIFACTS_DIR": str(self.artifacts),
                "RECSYS_DOMAINS_FILE": str(self.root / "domains.yaml"), "SPARK_LOCAL_IP": "127.0.0.1",
                "PYSPARK_PYTHON": python, "PYSPARK_DRIVER_PYTHON": python, "TF_CPP_MIN_LOG_LEVEL": "2"}


def walkthrough(work: Workdir, domain: str, prefix: str, last_days: int | None,
                holdout_fraction: float) -> tuple[list[Step], dict[str, Any]]:
    """Steps 1-5 of the walkthrough (up to the night); returns the steps and the split."""
    env = work.env()
    python = [sys.executable, "-m"]
    steps: list[Step] = []
    split: dict[str, Any] = {}
    sample = ["--last-days", str(last_days)] if last_days else []
    write = ["ingest.movielens_csv", "--out", str(work.full), "--domain", domain, "--id-prefix", prefix, *sample]
    steps.append(run_command("write_csv", [*python, *write], "python -m " + " ".join(write), env, work.logs))
    if steps[-1].ok:
        steps.append(run_inline("split", f"cut {work.full} into {work.own} (imported) and {work.heldout}",
                                lambda step: split.update(write_split(work.full, work.own, work.heldout,
                                                                      holdout_fraction))))
    else:
        steps.append(not_run("split", "cut the CSVs", "write_csv failed"))
    commands = {
        "domain_add": ["domain", "add", domain, "--id-prefix", prefix, "--event-types", "view,purchase",
                       "--positive", "view=1,purchase=4", "--conversion", "purchase", "--no-impressions",
                       "--quality", "min_rows=1", "--quality", "max_staleness_hours=24",
                       "--quality", "volume_lookback_days=0"],
        "data_import": ["data", "import", "--events", str(work.own / "events.csv"), "--catalog",
                        str(work.own / "catalog.csv"), "--users", str(work.own / "users.csv")],
        "nightly": ["airflow", "nightly", "--training-days", "all"],
    }
    for name, args in commands.items():
        failed = next((s.name for s in steps if not s.ok), None)
        if failed:
            steps.append(not_run(name, "recsys " + " ".join(args), f"{failed} failed"))
            continue
        steps.append(run_command(name, [*python, "cli", *args], "recsys " + " ".join(args), env, work.logs))
        if name == "nightly":
            night, airflow_db = steps[-1], work.data / "airflow" / "airflow.db"
            text = Path(night.log or "").read_text(errors="replace")
            night.details = {**night_tasks(text), "problems": night_problems(text),
                             "gate_xcom": gate_decision(airflow_db, domain)}
            if not night.details["tasks"]:  # killed before it printed its table: the Airflow DB knows
                night.details |= {"tasks": night_tasks_from_db(airflow_db), "tasks_from": "airflow DB"}
            if not night.ok:
                failed_tasks = [t["task"] for t in night.details["tasks"] if t["state"] not in ("success", "skipped")]
                night.reason = (f"{exit_text(night.exit_code or 0)}; tasks not successful: {failed_tasks}; "
                                f"{'; '.join(night.details['problems'][-6:])}")
    return steps, split


def evaluate(work: Workdir, domain: str, relevant: str, holdout_fraction: float, split: Mapping[str, Any],
             night_ran: bool, rounds: int) -> tuple[list[Step], Evaluation | None, dict[str, Any] | None]:
    """Build the ground truth, then the served pipeline, the release's retrievers and the baselines."""
    os.environ.update({k: v for k, v in work.env().items() if k.startswith("RECSYS_")})  # films' config, in process
    steps: list[Step] = []
    box: dict[str, Any] = {}
    steps.append(run_inline("ground_truth", f"held-out {relevant} events of {work.heldout}",
                            lambda step: box.update(evaluation=Evaluation.build(work.own, work.heldout, domain,
                                                                                relevant))))
    evaluation: Evaluation | None = box.get("evaluation")
    if evaluation is None:
        return steps, None, None
    version, published = published_release(work.artifacts, domain) if night_ran else (None, False)
    release = None
    if version:
        try:
            release = release_facts(work.artifacts, domain, version, published)
        except (OSError, ValueError, KeyError) as err:  # a damaged manifest is a finding, not a crash
            release = {"version": version, "published (CURRENT)": published, "metrics": {},
                       "unreadable_manifest": f"{type(err).__name__}: {err}"}
    if version and not published:
        say(f"no CURRENT release of {domain}: the retrievers are those of the newest finalized (refused) release {version}")
    if night_ran:
        steps.append(run_inline("served", "recsys serving serve + POST /v1/recommendations per held-out user",
                                lambda step: serve_and_ask(evaluation, work.env(), work.logs,
                                                           version if published else None, rounds, step)))
        if not published:
            steps[-1].details["note"] = "no published release: whatever the service serves without one"
    else:
        steps.append(not_run("served", "recsys serving serve", "the night did not run"))
    if version:
        steps.append(run_inline("retrievers", f"models.retrieval.candidates.retrieve on {domain}/{version}/retrieval",
                                lambda step: evaluate_retrievers(evaluation, work.artifacts, version, step)))
    else:
        steps.append(not_run("retrievers", "each retriever alone", "no release was built"))
    cut = pd.Timestamp(split["cut"])
    steps.append(run_inline("baselines", "EASE (tuned L2) and popularity on the pre-cut data",
                            lambda step: evaluate_baselines(evaluation, cut, holdout_fraction, step)))
    return steps, evaluation, release


def _rounds(row: Mapping[str, Any]) -> str:
    return f" (mean of {row['rounds']} rounds, range)" if row.get("rounds", 1) > 1 else ""


def gate_text(night: Mapping[str, Any]) -> str:
    """The promotion gate's decision: its XCom, else (a refusal fails the task: no XCom) the night log's line."""
    gate = night.get("gate_xcom")
    if isinstance(gate, dict) and "promote" in gate:
        return "PROMOTE" if gate["promote"] else "REFUSE: " + "; ".join(map(str, gate.get("reasons") or []))
    said = [line for line in night.get("problems", []) if "promotion" in line]
    return said[-1] if said else "no decision recorded"


def markdown(result: Mapping[str, Any]) -> str:
    lines = []
    split = result.get("split") or {}
    if split:
        events, users = split["events"], split["users"]
        lines += [f"Split: cut {split['cut']} (night for {split['night_logical_date']}, training_days all); "
                  f"{events['before_cut']:,} events imported, {events['heldout']:,} held out "
                  f"({events['heldout_share']:.1%}); {users['heldout_users_with_history']} of "
                  f"{users['heldout_users']} held-out users have history before the cut.", ""]
    lines += ["| stage | ok | wall time (s) | peak RSS tree (MB) | peak RSS one process (MB) |", "|---|---|---:|---:|---:|"]
    for step in result["steps"]:
        res = step.get("resources") or {}
        lines.append(f"| {step['name']} | {'yes' if step['ok'] else 'NO'} | {step['seconds'] if step['seconds'] is not None else '-'} "
                     f"| {res.get('peak_rss_tree_mb', '-')} | {res.get('peak_rss_process_mb', '-')} |")
    night = next((s for s in result["steps"] if s["name"] == "nightly"), None)
    if night and night.get("details", {}).get("tasks"):
        lines += ["", "| night task | state | wall time (s) | tries |", "|---|---|---:|---:|"]
        lines += [f"| {t['task']} | {t['state']} | {t['seconds']:.1f} | {t['tries']} |" for t in night["details"]["tasks"]]
        lines.append(f"| **DAG run** | **{night['details'].get('state')}** | **{night['details'].get('dag_seconds')}** | |")
    release = result.get("release")
    if release:
        shown = {k: v for k, v in release["metrics"].items() if "ndcg" in k or k in ("recall@100", "ranker_auc")}
        lines += ["", f"Release {release['version']} (published: {release['published (CURRENT)']}; gate: "
                      f"{gate_text((night or {}).get('details', {}))}); "
                      "manifest metrics on the night's held-out day: "
                      + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in sorted(shown.items()))]
    if result.get("metrics"):
        evaluation = result.get("evaluation") or {}
        lines += ["", f"Relevant: {evaluation.get('relevant')}."]
        lines += ["", f"| recommender | slice | users | {' | '.join(METRICS)} |", "|---|---|---:|" + "---:|" * len(METRICS)]
        lines += [f"| {r['recommender']}{_rounds(r)} | {r['slice']} | {r['users']} | "
                  + " | ".join(f"{r[m]:.4f}" + (" ({:.4f}-{:.4f})".format(*r[f'{m}_range']) if f"{m}_range" in r else "")
                               for m in METRICS) + " |"
                  for r in result["metrics"]]
    failed = [s for s in result["steps"] if not s["ok"]]
    if failed:
        lines += ["", "Failed / not run:"] + [f"- {s['name']}: {(s['reason'] or '').splitlines()[0][:500]}" for s in failed]
    return "\n".join(lines)


def code_state() -> dict[str, Any]:
    """The commit the run used and the files that differed from it (other work in progress runs too)."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {"head": git("rev-parse", "HEAD"), "uncommitted": git("status", "--porcelain").splitlines()}


def run(work: Workdir, domain: str, prefix: str, last_days: int | None, holdout_fraction: float, relevant: str,
        evaluate_only: bool, rounds: int = 5) -> dict[str, Any]:
    started = time.perf_counter()
    work.logs.mkdir(parents=True, exist_ok=True)
    saved = work.root / STEPS_FILE
    if evaluate_only:
        previous = json.loads(saved.read_text())
        steps, split = [Step(**s) for s in previous["steps"]], previous["split"]
        code = {"walkthrough": previous.get("code"), "evaluation": code_state()}
        say(f"reusing the walkthrough of {work.root} (its night: {'ok' if steps[-1].ok else 'failed'})")
    else:
        domains_file = work.root / "domains.yaml"
        domains_file.write_text((REPO_ROOT / "config" / "domains.yaml").read_text())
        code = {"walkthrough": code_state()}
        steps, split = walkthrough(work, domain, prefix, last_days, holdout_fraction)
        saved.write_text(json.dumps({"steps": [asdict(s) for s in steps], "split": split, "code": code["walkthrough"]},
                                    indent=1, default=str))
    night = next(s for s in steps if s.name == "nightly")
    imported = next(s for s in steps if s.name == "data_import").ok
    evaluation, release, eval_steps = None, None, []
    if split:
        eval_steps, evaluation, release = evaluate(work, domain, relevant, holdout_fraction, split,
                                                   night_ran=imported and night.exit_code is not None, rounds=rounds)
    steps = [*steps, *eval_steps]
    return {
        "benchmark": "own_data",
        "walkthrough": [s.command for s in steps if s.command.startswith(("python -m ingest", "recsys"))],
        "workdir": str(work.root), "domain": domain, "sample_last_days": last_days, "k": K,
        "machine": {"cpus": os.cpu_count(), "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "code": code,
        "split": split,
        "evaluation": evaluation.facts if evaluation else None,
        "release": release,
        "steps": [asdict(s) for s in steps],
        "night_tasks_s": {t["task"]: t["seconds"] for t in night.details.get("tasks", [])},
        "peak_rss_night_mb": night.resources.get("peak_rss_tree_mb"),
        "metrics": evaluation.table() if evaluation else [],
        "ok": all(s.ok for s in steps),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = report.parser("own_data", __doc__, OUT_FILE)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="scratch folder (data, artifacts, domains.yaml, logs); default: a new temporary folder, "
                             "removed after a successful run unless --keep")
    parser.add_argument("--keep", action="store_true", help="keep the temporary scratch folder")
    parser.add_argument("--last-days", type=int, default=None,
                        help="a sample: only the last N days of MovieLens (e.g. 90, to check the script)")
    parser.add_argument("--holdout-fraction", type=float, default=0.1,
                        help="share of the timeline's events held out, by time (default: %(default)s)")
    parser.add_argument("--relevant", choices=("purchase", "all"), default="purchase",
                        help="relevant held-out events: purchase (rating >= 4) or every positive event (default: %(default)s)")
    parser.add_argument("--domain", default="films", help="the domain the user declares (default: %(default)s)")
    parser.add_argument("--id-prefix", default="f_", help="its id prefix (default: %(default)s)")
    parser.add_argument("--served-rounds", type=int, default=5,
                        help="ask the service for every held-out user this many times (exploration slots make slates "
                             "random): served figures are the mean, with their range (default: %(default)s)")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="reuse the walkthrough (night included) already run in --workdir; evaluate again")
    args = parser.parse_args(argv)
    if args.evaluate_only and (args.workdir is None or not (args.workdir / STEPS_FILE).exists()):
        parser.error(f"--evaluate-only needs a --workdir where a run left {STEPS_FILE}")
    root = args.workdir.resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="own-data-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"ok": False}
    try:
        result = run(Workdir(root), args.domain, args.id_prefix, args.last_days, args.holdout_fraction, args.relevant,
                     args.evaluate_only, args.served_rounds)
        report.write(args.out, result)
        print(markdown(result), flush=True)
    finally:
        if args.workdir is None and result["ok"] and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            say(f"scratch folder kept: {root}")
    if not result["ok"]:
        say("some stages failed (see above and the report); exit 1")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
