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
* ``retriever:<name>``: each retriever of the published release alone (``models.candidates.retrieve``
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
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks import report
from common.paths import REPO_ROOT

OUT_FILE = REPO_ROOT / "reports" / "bench" / "own_data.json"
K = 10
POLL_S = 0.5
READY_TIMEOUT_S = 900.0  # the service loads TensorFlow and the release; the machine is shared
MB = 1024 * 1024
STEPS_FILE = "steps.json"
HEADLINE = "with_history"
SLICES = (HEADLINE, "without_history")
METRICS = ("ndcg@10", "recall@10", "hit_rate@10")
NO_ITEM = "<no item>"  # the filler of a short served slate: in the scored vocabulary, never relevant


def say(message: str) -> None:
    print(f"[own_data] {message}", flush=True)


# ---- subprocess steps with wall time and peak RSS of the process tree ----------------------------


class TreeMonitor:
    """Polls a process and all its descendants (psutil) until stopped: the peak of their summed RSS and
    the largest single process seen."""

    def __init__(self, pid: int, interval_s: float = POLL_S) -> None:
        self.pid, self.interval_s = pid, interval_s
        self.peak_tree = 0
        self.peak_single, self.peak_single_name = 0, ""
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self, root: Any) -> None:
        import psutil

        total, processes = 0, 0
        for proc in [root, *root.children(recursive=True)]:
            try:
                rss = proc.memory_info().rss
                name = proc.name()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            total += rss
            processes += 1
            if rss > self.peak_single:
                self.peak_single, self.peak_single_name = rss, name
        self.peak_tree = max(self.peak_tree, total)
        self.peak_processes = max(self.peak_processes, processes)

    def _run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            try:
                self._sample(root)
            except psutil.NoSuchProcess:
                return
            self._stop.wait(self.interval_s)

    def figures(self) -> dict[str, Any]:
        return {"peak_rss_tree_mb": round(self.peak_tree / MB, 1), "peak_rss_process_mb": round(self.peak_single / MB, 1),
                "peak_rss_process_name": self.peak_single_name, "peak_processes": self.peak_processes}


def children_maxrss_mb() -> float:
    """``getrusage(RUSAGE_CHILDREN).ru_maxrss``: the largest single descendant reaped so far (KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)


@dataclass
class Step:
    name: str
    command: str
    ok: bool = False
    seconds: float | None = None
    exit_code: int | None = None
    reason: str | None = None
    log: str | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_command(name: str, argv: Sequence[str], shown: str, env: Mapping[str, str], log_dir: Path) -> Step:
    """Run one walkthrough command as a subprocess (its output to ``log_dir/<name>.log``), timed and monitored."""
    log = log_dir / f"{name}.log"
    step = Step(name, shown, log=str(log))
    say(f"{name}: {shown}  (log: {log})")
    started = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(list(argv), cwd=REPO_ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT)
        with TreeMonitor(process.pid) as monitor:
            code = process.wait()
    step.seconds = round(time.perf_counter() - started, 1)
    step.exit_code, step.ok = code, code == 0
    step.resources = {**monitor.figures(), "rusage_children_maxrss_mb_so_far": children_maxrss_mb()}
    if not step.ok:
        step.reason = f"{_exit(code)}; last lines of {log.name}:\n{_tail(log)}"
    say(f"{name}: {'ok' if step.ok else 'FAILED'} in {step.seconds} s, peak RSS {step.resources['peak_rss_tree_mb']} MB"
        f" (tree), {step.resources['peak_rss_process_mb']} MB ({step.resources['peak_rss_process_name']})")
    return step


def _exit(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name} (a signal from outside the command: the OOM killer or another process)"
    return f"exit code {code}"


def run_inline(name: str, shown: str, body: Callable[[Step], None]) -> Step:
    """An in-process stage: timed; an exception fails the stage with its reason (never silently)."""
    step = Step(name, shown)
    say(f"{name}: {shown}")
    started = time.perf_counter()
    try:
        body(step)
        step.ok = True
    except Exception as err:  # a benchmark records every failure and goes on with what does not need it
        step.reason = f"{type(err).__name__}: {err}"
        step.details["traceback"] = traceback.format_exc(limit=8)
    step.seconds = round(time.perf_counter() - started, 1)
    say(f"{name}: {'ok' if step.ok else 'FAILED: ' + str(step.reason)} in {step.seconds} s")
    return step


def not_run(name: str, shown: str, missing: str) -> Step:
    step = Step(name, shown, reason=f"not run: {missing}")
    say(f"{name}: NOT RUN ({missing})")
    return step


# ---- the split ---------------------------------------------------------------------------------


def _read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _times(column: pd.Series) -> pd.Series:
    return pd.to_datetime(column, utc=True)


def cut_point(timestamps: pd.Series, holdout_fraction: float) -> pd.Timestamp:
    """The UTC midnight starting the day of the ``1 - holdout_fraction`` quantile of ``timestamps``."""
    if not 0 < holdout_fraction < 1:
        raise ValueError(f"--holdout-fraction must be in (0, 1), got {holdout_fraction}")
    return _times(timestamps).quantile(1.0 - holdout_fraction).floor("D")


def write_split(full: Path, own: Path, heldout: Path, holdout_fraction: float) -> dict[str, Any]:
    """Cut the user's whole-history CSVs at :func:`cut_point`: ``own`` gets what existed before the cut
    (the files the user imports), ``heldout/events.csv`` the events from the cut on."""
    events, catalog, users = (_read_csv(full / f"{name}.csv") for name in ("events", "catalog", "users"))
    times = _times(events["timestamp"])
    cut = cut_point(events["timestamp"], holdout_fraction)
    before = times < cut
    if before.all() or not before.any():
        raise ValueError(f"the cut {cut} leaves nothing {'held out' if before.all() else 'to train on'}")
    parts = {
        own / "events.csv": events[before],
        own / "catalog.csv": catalog[_times(catalog["launched_at"]) < cut],
        own / "users.csv": users[_times(users["signed_up_at"]) < cut],
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


# ---- the night's report ------------------------------------------------------------------------

TASK_ROW = re.compile(r"^\| (?P<task>[\w.\-]+) \| (?P<state>[\w-]+) \| (?P<seconds>[\d.]+) \| (?P<tries>\d+) \|$")
TOTAL_ROW = re.compile(r"^\| \*\*(?P<dag>\w+) \((?P<date>[\d-]+)\)\*\* \| \*\*(?P<state>[\w-]+)\*\* \| "
                       r"\*\*(?P<seconds>[\d.]+)\*\* \| \|$")
PROBLEM = re.compile(r"promotion (gate|refused)|DataError|ReleaseCheckFailed|Exception:|Error:|Error code|refus",
                     re.IGNORECASE)
NOISE = re.compile(r"cuInit|cuda_platform|Unable to register cu")  # TensorFlow looking for a GPU on a CPU machine


def night_tasks(log_text: str) -> dict[str, Any]:
    """The per-task table ``recsys airflow nightly`` prints (:meth:`orchestration.runner.RunReport.table`)."""
    tasks = [{"task": m["task"], "state": m["state"], "seconds": float(m["seconds"]), "tries": int(m["tries"])}
             for m in map(TASK_ROW.match, log_text.splitlines()) if m]
    total = next((m for m in map(TOTAL_ROW.match, log_text.splitlines()) if m), None)
    return {"tasks": tasks, "state": total["state"] if total else None,
            "dag_seconds": float(total["seconds"]) if total else None, "logical_date": total["date"] if total else None}


def night_tasks_from_db(airflow_db: Path, dag_id: str = "nightly_retrain") -> list[dict[str, Any]]:
    """Every task instance of the DAG's newest run from the Airflow DB: what the table would have said, for a
    night killed before it printed it (states of tasks never started are null)."""
    if not airflow_db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{airflow_db}?mode=ro", uri=True) as db:
            run = db.execute("SELECT run_id FROM task_instance WHERE dag_id = ? ORDER BY start_date DESC LIMIT 1",
                             (dag_id,)).fetchone()
            rows = db.execute("SELECT task_id, state, duration, try_number, start_date FROM task_instance "
                              "WHERE dag_id = ? AND run_id = ? ORDER BY start_date IS NULL, start_date, task_id",
                              (dag_id, run[0])).fetchall() if run else []
    except sqlite3.Error:
        return []
    return [{"task": task, "state": state or "none", "seconds": round(float(duration or 0.0), 1), "tries": int(tries or 0)}
            for task, state, duration, tries, _ in rows]


def night_problems(log_text: str, limit: int = 40) -> list[str]:
    """The night log's lines about refusals and errors (the gate's decision included), deduplicated."""
    lines = [line.strip()[:400] for line in log_text.splitlines() if PROBLEM.search(line) and not NOISE.search(line)]
    return list(dict.fromkeys(lines))[-limit:]


def gate_decision(airflow_db: Path, domain: str) -> Any:
    """The promotion gate task's return value (its XCom) from the night's Airflow DB; None if absent."""
    if not airflow_db.exists():
        return None
    try:
        with sqlite3.connect(f"file:{airflow_db}?mode=ro", uri=True) as db:
            row = db.execute("SELECT value FROM xcom WHERE task_id = ? AND key = 'return_value' ORDER BY timestamp DESC "
                             "LIMIT 1", (f"{domain}.promotion_gate",)).fetchone()
    except sqlite3.Error as err:
        return {"unreadable": str(err)}
    if row is None:
        return None
    value = row[0]
    try:
        return _plain(json.loads(value.decode() if isinstance(value, bytes) else value))
    except (ValueError, AttributeError):
        return str(value)


def _plain(value: Any) -> Any:
    """Airflow's serialized XCom without its wrappers (``{"__classname__": "builtins.tuple", "__data__": [...]}``)."""
    if isinstance(value, dict):
        if "__classname__" in value and "__data__" in value:
            return _plain(value["__data__"])
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# ---- evaluation --------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """The held-out ground truth and what every recommender is scored with."""

    domain: str
    positives: tuple[str, ...]
    before: pd.DataFrame  # pre-cut interactions (the domain's positive events, weighted)
    catalog: pd.DataFrame
    users: pd.DataFrame
    truth: Any  # models.evaluation.split.GroundTruth, every held-out user with a relevant item
    context: Any  # models.evaluation.evaluate.EvaluationContext of ``truth``
    has_history: np.ndarray
    facts: dict[str, Any]
    lists: dict[str, list[np.ndarray]] = field(default_factory=dict)  # recommender -> rounds of (n_users, K) ids

    @classmethod
    def build(cls, own: Path, heldout: Path, domain: str, relevant: str) -> Evaluation:
        from common.domains import domain as domain_config
        from models.evaluation.data import DomainData
        from models.evaluation.evaluate import EvaluationContext
        from models.evaluation.split import build_ground_truth

        config = domain_config(domain)
        positives = (config.conversion_event,) if relevant == "purchase" else tuple(config.positive_events)
        catalog, users = _read_csv(own / "catalog.csv"), _read_csv(own / "users.csv")
        before = DomainData.from_events(domain, _read_csv(own / "events.csv"), catalog, users).interactions
        held = DomainData.from_events(domain, _read_csv(heldout / "events.csv"), catalog, users).interactions
        known = held["item_id"].isin(set(catalog["item_id"]))
        late = held[~known & held["event_type"].isin(positives)]
        scored = pd.concat([catalog, pd.DataFrame({"item_id": [NO_ITEM], "category": [""]})], ignore_index=True)
        truth = build_ground_truth(held[known], before, scored, positives)
        has_history = np.isin(truth.user_ids, before["user_id"].unique())
        context = EvaluationContext.build(truth, before, scored, K)
        facts = {
            "relevant": f"held-out {'/'.join(positives)} events on pre-cut catalog items, items the user had "
                        "any event with before the cut excluded",
            "positive_events": list(positives),
            "users": {"evaluated": len(truth.user_ids), HEADLINE: int(has_history.sum()),
                      "without_history": int((~has_history).sum())},
            "relevant_pairs": int(truth.relevance.nnz),
            "heldout_positive_pairs_on_items_launched_after_the_cut (excluded)":
                int(late[["user_id", "item_id"]].drop_duplicates().shape[0]),
        }
        return cls(domain, positives, before, catalog, users, truth, context, has_history, facts)

    def histories(self) -> tuple[dict[str, list[str]], dict[str, set[str]]]:
        from models.candidates import evaluation_histories

        return evaluation_histories(self.before, self.truth.user_ids)

    def table(self) -> list[dict[str, Any]]:
        """One row per (recommender, slice): users and the metrics at K."""
        rows = []
        for name, lists in self.lists.items():
            for slice_name, mask in zip(SLICES, (self.has_history, ~self.has_history), strict=True):
                if not mask.any():
                    continue
                context, kept = self.context.restrict(users=mask)
                runs = [context.evaluate(recs[kept], ks=(K,)) for recs in lists]
                row = {"recommender": name, "slice": slice_name, "users": runs[0]["users"], "rounds": len(runs)}
                for metric in METRICS:
                    values = [float(run[metric]) for run in runs]
                    row[metric] = round(float(np.mean(values)), 4)
                    if len(values) > 1:
                        row[f"{metric}_range"] = [round(min(values), 4), round(max(values), 4)]
                rows.append(row)
        return rows


def _padded(slate: Sequence[str], catalog: set[str]) -> tuple[list[str], int]:
    """A served slate as exactly K ids: a short slate (or an id outside the catalog) is filled with
    :data:`NO_ITEM`, which is never relevant (a miss). Returns the list and how many places were filled."""
    items = [i for i in slate if i in catalog][:K]
    return items + [NO_ITEM] * (K - len(items)), K - len(items)


def serve_and_ask(evaluation: Evaluation, env: Mapping[str, str], log_dir: Path, version: str | None,
                  rounds: int, step: Step) -> None:
    """``recsys serving serve`` on a free loopback port, one ``POST /v1/recommendations`` per held-out user."""
    import httpx

    from loop.service import ServiceClient, free_port

    port = free_port()
    argv = [sys.executable, "-m", "cli", "serving", "serve", "--port", str(port), "--domains", evaluation.domain,
            "--log-level", "warning"]
    step.command = f"recsys serving serve --port {port} --domains {evaluation.domain}"
    log = log_dir / "serving.log"
    step.log = str(log)
    started = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=REPO_ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            with TreeMonitor(process.pid) as monitor:
                url = f"http://127.0.0.1:{port}"
                deadline = time.monotonic() + READY_TIMEOUT_S
                while True:
                    if process.poll() is not None:
                        raise RuntimeError(f"the service exited with code {process.returncode} before it was ready:\n"
                                           f"{_tail(log)}")
                    try:
                        if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"the service was not ready within {READY_TIMEOUT_S:.0f} s")
                    time.sleep(0.5)
                client = ServiceClient(url, env.get("RECSYS_API_KEY"))
                try:
                    if version is not None:
                        client.wait_for_releases({evaluation.domain: version}, timeout_s=READY_TIMEOUT_S)
                    step.details["ready_s"] = round(time.perf_counter() - started, 1)
                    step.details["releases"] = client.releases()
                    _ask(evaluation, client, step, rounds)
                finally:
                    client.close()
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
    step.resources = monitor.figures()


def _ask(evaluation: Evaluation, client: Any, step: Step, repeats: int) -> None:
    """Every held-out user ``repeats`` times (a new session each time): the slates differ through the
    exploration slots, so the served figures are the mean over the rounds (their range is reported)."""
    catalog = set(evaluation.catalog["item_id"])
    rounds, paths, releases, errors, latencies, filled = [], Counter(), Counter(), Counter(), [], 0
    for round_ in range(repeats):
        rows = []
        for user, warm in zip(map(str, evaluation.truth.user_ids), evaluation.has_history, strict=True):
            asked = time.perf_counter()
            try:
                slate = client.recommend(user, evaluation.domain, K, device="web", session_id=f"bench-{round_}-{user}")
            except Exception as err:  # an error answer is recorded and scored as an empty slate
                errors[type(err).__name__ + (f" {err.response.status_code}" if hasattr(err, "response") else "")] += 1
                items, short = _padded([], catalog)
            else:
                latencies.append((time.perf_counter() - asked) * 1000)
                paths[f"{SLICES[0] if warm else SLICES[1]}: {slate.path}"] += 1
                releases[slate.release] += 1
                items, short = _padded(slate.item_ids, catalog)
            filled += short
            rows.append(items)
        rounds.append(np.asarray(rows, dtype=object).reshape(len(rows), K))
    evaluation.lists["served"] = rounds
    asked_total = repeats * len(evaluation.truth.user_ids)
    step.details |= {"requests": asked_total, "rounds": repeats, "errors": dict(errors), "paths": dict(paths),
                     "releases": dict(releases), "slots_filled_as_misses (short slates, errors)": filled,
                     **({"client_latency": report.latency_ms(latencies)} if latencies else {})}
    if errors:
        raise RuntimeError(f"{sum(errors.values())} of {asked_total} requests failed: {dict(errors)}")


def published_release(artifacts: Path, domain: str) -> tuple[str | None, bool]:
    """The domain's CURRENT release, or else its newest finalized one (``published`` False); (None, False) if none."""
    from common.registry import ArtifactRegistry

    registry = ArtifactRegistry(artifacts)
    current = registry.current(domain)
    if current is not None:
        return current, True
    releases = registry.list_releases(domain)
    return (releases[-1].version, False) if releases else (None, False)


def release_facts(artifacts: Path, domain: str, version: str, published: bool) -> dict[str, Any]:
    from common.registry import ArtifactRegistry

    manifest = ArtifactRegistry(artifacts).load_manifest(domain, version)
    summaries = manifest.extra.get("summaries", {})
    ranker = summaries.get("ranker", {})
    return {
        "version": version, "published (CURRENT)": published, "created_at": manifest.created_at,
        "code_revision": manifest.code_revision, "training_window": manifest.training_window,
        "metrics": manifest.metrics,
        "ranker": {key: ranker.get(key) for key in ("ranking_data", "positives", "negatives", "train_rows", "valid_rows",
                                                     "position_correction", "structure", "metrics", "best_epoch")
                   if key in ranker},
        "summaries": sorted(summaries),
        **({"gate": manifest.extra["gate"]} if "gate" in manifest.extra else {}),
    }


def evaluate_retrievers(evaluation: Evaluation, artifacts: Path, version: str, step: Step) -> None:
    import common  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
    from models.candidates import RETRIEVERS, retrieve
    from models.release import RETRIEVAL_DIR
    from models.retrieval.export import load_retrievers

    retrievers = load_retrievers(artifacts / evaluation.domain / version / RETRIEVAL_DIR)
    histories, seen = evaluation.histories()
    candidates = retrieve(retrievers, evaluation.truth.user_ids, histories, seen, K)
    for name in RETRIEVERS:
        evaluation.lists[f"retriever:{name}"] = [candidates.ids[name]]
    step.details["own_candidates_mean"] = {name: round(float(candidates.found[name].mean()), 2) for name in RETRIEVERS}


def evaluate_baselines(evaluation: Evaluation, cut: pd.Timestamp, holdout_fraction: float, step: Step) -> None:
    """EASE (L2 tuned on a validation window: the last ``holdout_fraction`` of the pre-cut events, day-aligned)
    and popularity, both fitted on every pre-cut interaction."""
    from models.evaluation.baselines import EASERecommender, PopularityRecommender
    from models.evaluation.split import TemporalSplit
    from models.evaluation.tuning import grid_search

    before = evaluation.before
    validation_start = cut_point(before["timestamp"], holdout_fraction)
    early = before["timestamp"] < validation_start
    split = TemporalSplit(train=before, test=before.iloc[:0], fit=before[early], validation=before[~early],
                          validation_start=validation_start, test_start=cut, test_end=cut)
    step.details["ease"] = {"validation": [str(validation_start), str(cut)]}
    try:
        tuned = grid_search(EASERecommender, EASERecommender.search_space, split, evaluation.catalog, evaluation.users,
                            evaluation.positives, progress=say)
        params = tuned.params
        step.details["ease"] |= {"params": params, "grid": tuned.scores.to_dict("records")}
    except ValueError as err:  # a validation window without a warm user (a small sample): the default L2
        params = {}
        step.details["ease"] |= {"params": EASERecommender().params, "not_tuned": str(err)}
    users = evaluation.truth.user_ids
    for name, model in (("ease", EASERecommender(**params)), ("popularity", PopularityRecommender())):
        fitted = model.fit(before, evaluation.catalog, evaluation.users)
        evaluation.lists[name] = [fitted.recommend(users, K)]


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
                night.reason = (f"{_exit(night.exit_code or 0)}; tasks not successful: {failed_tasks}; "
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
        steps.append(run_inline("retrievers", f"models.candidates.retrieve on {domain}/{version}/retrieval",
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
