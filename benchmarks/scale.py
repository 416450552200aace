"""How the nightly pipeline's cost grows with the data: wall time, CPU seconds and peak RSS per stage at
several world sizes, and the log-log slope of each stage's time and memory against the number of events.

For each size (a scale profile of :mod:`simulation.profiles`: ``s4k`` = 4,000 users, ``s100k``,
``s1m``, ...), in a scratch data root of its own, as a user runs it:

1. ``recsys sim generate --profile <size>``: the world (its lake's events are counted);
2. ``recsys airflow nightly``: the real nightly DAG through Airflow's test runner. The process tree is
   sampled every half second (RSS summed over every process, CPU seconds); each task's wall time, CPU
   seconds and peak RSS come from the samples inside the task's start..end in the Airflow DB;
3. ``recsys serving serve --workers 1`` on the night's releases: the serving worker's RSS once ``/readyz``
   answers 200 (per-process serving memory against the number of users).

A stage that fails or is not run at a size is recorded with its reason (and the sizes after a failed
one still run). The slopes are least-squares fits of log(seconds) and log(peak RSS) against log(events)
over the sizes where the stage ran; ``marginal`` is the slope between the two largest sizes, where the
fixed start-up costs (Spark, TensorFlow, Airflow) weigh least. Writes ``reports/bench/scale.json`` and
``reports/bench/scale.png``.

    python -m benchmarks.scale                              # s4k, s12k, s36k (about an hour here)
    python -m benchmarks.scale --sizes s100k,s300k,s1m      # the issue's sizes (many hours)
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks import process_steps
from benchmarks.own_data_night import night_problems
from benchmarks.process_steps import MB, Step, TreeMonitor, not_run, run_command, say
from benchmarks.report import parser, write
from common.paths import REPO_ROOT, DataPaths
from loop.service import free_port

DEFAULT_SIZES = ("s4k", "s12k", "s36k")
READY_TIMEOUT_S = 600.0
SERVING_SETTLE_S = 5.0


def parquet_rows(root: Path) -> int:
    """Rows of every Parquet file under ``root`` (from the files' footers, nothing else is read)."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in root.rglob("*.parquet"))


def task_windows(airflow_db: Path, dag_id: str = "nightly_retrain") -> list[dict[str, Any]]:
    """Every task of the DAG's newest run: id, state, start and end (epoch seconds; None if it never ran)."""
    if not airflow_db.exists():
        return []
    with sqlite3.connect(f"file:{airflow_db}?mode=ro", uri=True) as db:
        run = db.execute("SELECT run_id FROM task_instance WHERE dag_id = ? ORDER BY start_date DESC LIMIT 1",
                         (dag_id,)).fetchone()
        rows = db.execute("SELECT task_id, state, start_date, end_date FROM task_instance WHERE dag_id = ? AND "
                          "run_id = ? ORDER BY start_date IS NULL, start_date", (dag_id, run[0])).fetchall() if run else []

    def epoch(value: Any) -> float | None:  # Airflow keeps UTC
        if value is None:
            return None
        stamp = pd.Timestamp(value)
        return float((stamp if stamp.tzinfo else stamp.tz_localize("UTC")).timestamp())

    return [{"task": task, "state": state or "none", "start": epoch(start), "end": epoch(end)}
            for task, state, start, end in rows]


def per_task(timeline: Sequence[tuple[float, int, int, float]], windows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Each task's wall time and, from the samples inside its window (the nearest one for a short task),
    its peak tree RSS, largest process and CPU seconds."""
    if not timeline:
        return {}
    times = np.asarray([t for t, *_ in timeline])
    out: dict[str, Any] = {}
    for window in windows:
        if window["start"] is None or window["end"] is None:
            out[window["task"]] = {"state": window["state"], "reason": "not run"}
            continue
        first = int(np.searchsorted(times, window["start"], side="left"))
        last = int(np.searchsorted(times, window["end"], side="right"))
        inside = timeline[min(first, len(timeline) - 1): max(last, first + 1)]
        before = timeline[max(first - 1, 0)]
        after = timeline[min(last, len(timeline) - 1)]
        out[window["task"]] = {
            "state": window["state"],
            "seconds": round(window["end"] - window["start"], 1),
            "cpu_seconds": round(max(after[3] - before[3], 0.0), 1),
            "peak_rss_tree_mb": round(max(s[1] for s in inside) / MB, 1),
            "peak_rss_process_mb": round(max(s[2] for s in inside) / MB, 1),
        }
    return out


def serving_memory(env: Mapping[str, str], log_dir: Path) -> Step:
    """Start one serving worker on the data root's releases; its RSS once ``/readyz`` answers 200."""
    import psutil

    port = free_port()
    argv = [sys.executable, "-m", "cli", "serving", "serve", "--workers", "1", "--port", str(port)]
    step = Step("serving", "recsys " + " ".join(argv[3:]), log=str(log_dir / "serving.log"))
    say(f"serving: {step.command}")
    started = time.perf_counter()
    with open(step.log or "", "wb") as out:
        process = subprocess.Popen(argv, cwd=REPO_ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            ready = False
            while time.perf_counter() - started < READY_TIMEOUT_S and process.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                        ready = response.status == 200
                except OSError:
                    pass
                if ready:
                    break
                time.sleep(1.0)
            step.seconds = round(time.perf_counter() - started, 1)
            if not ready:
                step.reason = f"/readyz never answered 200 (exit code {process.poll()}); see {step.log}"
                return step
            time.sleep(SERVING_SETTLE_S)
            tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
            sizes = {p.pid: p.memory_info().rss for p in tree if p.is_running()}
            step.ok = True
            step.resources = {"peak_rss_tree_mb": round(sum(sizes.values()) / MB, 1),
                              "peak_rss_process_mb": round(max(sizes.values()) / MB, 1), "processes": len(sizes)}
        finally:
            try:
                os.killpg(process.pid, 15)
                process.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(process.pid, 9)
    say(f"serving: ready in {step.seconds} s, largest process {step.resources['peak_rss_process_mb']} MB")
    return step


def promote_refused(artifacts: Path, env: Mapping[str, str], log_dir: Path) -> dict[str, str]:
    """For the serving-memory measurement only: a domain whose night's release the gate refused (no live
    release) gets it promoted here, through ``recsys data releases promote`` and its serving-load check, so
    serving loads the models it would have. Returns what was promoted (it is in the report)."""
    from common.registry import ArtifactRegistry

    registry = ArtifactRegistry(artifacts)
    promoted = {}
    for domain in sorted(p.name for p in artifacts.iterdir() if p.is_dir()) if artifacts.is_dir() else []:
        releases = registry.list_releases(domain)
        if registry.current(domain) is None and releases:
            version = max(m.version for m in releases)
            argv = ["data", "releases", "promote", "--domain", domain, "--version", version]
            if run_command(f"promote_{domain}", [sys.executable, "-m", "cli", *argv], "recsys " + " ".join(argv), env,
                           log_dir).ok:
                promoted[domain] = version
    return promoted


def run_size(size: str, root: Path, seed: int, serve: bool) -> dict[str, Any]:
    """Generate, run the night and start serving at one size; every stage's figures (or why not)."""
    data, logs = root / "data", root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    env = {**os.environ, "RECSYS_DATA_DIR": str(data), "RECSYS_ARTIFACTS_DIR": str(root / "artifacts"),
           "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": python, "PYSPARK_DRIVER_PYTHON": python,
           "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO_ROOT)}  # this checkout's code, in every process
    generate = ["sim", "generate", "--profile", size, "--seed", str(seed), "--data-dir", str(data), "--quiet"]
    steps = [run_command("generate", [python, "-m", "cli", *generate], "recsys " + " ".join(generate), env, logs)]
    result: dict[str, Any] = {"size": size}
    if steps[0].ok:
        paths = DataPaths(data)
        result |= {"events": parquet_rows(paths.events), "users": parquet_rows(paths.lake / "users"),
                   "items": parquet_rows(paths.lake / "catalog")}
        monitor = TreeMonitor(0, timeline=True)
        steps.append(run_command("night", [python, "-m", "cli", "airflow", "nightly"], "recsys airflow nightly", env,
                                 logs, monitor))
        result["tasks"] = per_task(monitor.timeline or [], task_windows(data / "airflow" / "airflow.db"))
        failed = [t for t, v in result["tasks"].items() if v["state"] not in ("success", "skipped")]
        if failed:  # with why: the gate's refusals and the errors the night logged
            steps[-1].details["failed_tasks"] = failed
            steps[-1].details["problems"] = night_problems(Path(steps[-1].log or "").read_text(errors="replace"),
                                                           limit=8)
    else:
        steps.append(not_run("night", "recsys airflow nightly", "generate failed"))
    if serve:
        trained = steps[-1].ok or bool(result.get("tasks"))
        result["promoted_for_serving"] = promote_refused(root / "artifacts", env, logs) if trained else {}
        steps.append(serving_memory(env, logs) if trained else not_run("serving", "recsys serving serve",
                                                                         "the night trained no model"))
    result["steps"] = [asdict(s) for s in steps]
    return result


def stage_figures(result: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """One size's stages -> seconds / cpu_seconds / peak RSS: the steps, and each night task as ``night.<task>``."""
    out: dict[str, dict[str, float]] = {}
    for step in result.get("steps", []):
        if step["ok"]:
            out[step["name"]] = {"seconds": step["seconds"], "peak_rss_tree_mb": step["resources"]["peak_rss_tree_mb"],
                                 "peak_rss_process_mb": step["resources"]["peak_rss_process_mb"]}
    for task, figures in result.get("tasks", {}).items():
        if figures.get("state") == "success":
            out[f"night.{task}"] = {k: figures[k] for k in ("seconds", "cpu_seconds", "peak_rss_tree_mb",
                                                            "peak_rss_process_mb")}
    return out


def slopes(results: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per stage: the log-log slope of each figure against events (all sizes, and the two largest)."""
    per_stage: dict[str, list[tuple[int, dict[str, float]]]] = {}
    for result in results:
        if result.get("events"):
            for stage, figures in stage_figures(result).items():
                per_stage.setdefault(stage, []).append((int(result["events"]), figures))
    out: dict[str, dict[str, Any]] = {}
    for stage, points in per_stage.items():
        points.sort(key=lambda p: p[0])
        entry: dict[str, Any] = {"sizes": len(points)}
        for figure in ("seconds", "cpu_seconds", "peak_rss_tree_mb", "peak_rss_process_mb"):
            xs = [np.log(e) for e, f in points if f.get(figure)]
            ys = [np.log(f[figure]) for _, f in points if f.get(figure)]
            if len(xs) >= 2 and len(set(xs)) >= 2:
                entry[figure] = {"slope": round(float(np.polyfit(xs, ys, 1)[0]), 3),
                                 "marginal": round(float((ys[-1] - ys[-2]) / (xs[-1] - xs[-2])), 3)}
        out[stage] = entry
    return out


def plot(results: Sequence[Mapping[str, Any]], out: Path, stages: int = 10) -> None:
    """Time and peak RSS against events, log-log, for the costliest stages at the largest size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ran = [r for r in results if r.get("events")]
    if not ran:
        return
    largest = stage_figures(max(ran, key=lambda r: r["events"]))
    shown = sorted(largest, key=lambda s: -largest[s]["seconds"])[:stages]
    figure, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for stage in shown:
        points = sorted((r["events"], stage_figures(r).get(stage)) for r in ran if stage_figures(r).get(stage))
        events = [e for e, _ in points]
        axes[0].plot(events, [f["seconds"] for _, f in points], marker="o", label=stage)
        axes[1].plot(events, [f["peak_rss_tree_mb"] for _, f in points], marker="o", label=stage)
    for axis, label in zip(axes, ("wall seconds", "peak RSS of the process tree (MB)"), strict=True):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("events in the lake")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper left")
    figure.suptitle("Nightly stages against the data size (" + ", ".join(r["size"] for r in ran) + ")")
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    args_parser = parser("scale", __doc__, REPO_ROOT / "reports" / "bench" / "scale.json")
    args_parser.add_argument("--sizes", default=",".join(DEFAULT_SIZES),
                             help="comma-separated scale profiles, smallest first (default: %(default)s)")
    args_parser.add_argument("--seed", type=int, default=7, help="seed of the worlds (default: %(default)s)")
    args_parser.add_argument("--workdir", type=Path, default=None, help="scratch root (default: a temporary one)")
    args_parser.add_argument("--keep", action="store_true", help="keep each size's data root")
    args_parser.add_argument("--no-serving", action="store_true", help="skip the serving-memory stage")
    args = args_parser.parse_args(argv)
    process_steps.LOG_PREFIX = "scale"
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    from simulation.profiles import get_profile

    for size in sizes:
        try:
            get_profile(size)
        except ValueError as err:
            args_parser.error(str(err))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="recsys-scale-"))
    results = []
    started = time.perf_counter()
    for size in sizes:
        say(f"=== size {size} in {workdir / size}")
        root = workdir / size
        shutil.rmtree(root, ignore_errors=True)
        result = run_size(size, root, args.seed, not args.no_serving)
        results.append(result)
        if not args.keep:
            shutil.rmtree(root / "data", ignore_errors=True)
            shutil.rmtree(root / "artifacts", ignore_errors=True)
        write(args.out, {"sizes": results, "slopes": slopes(results), "seconds": round(time.perf_counter() - started, 1),
                         "workdir": str(workdir), "cpus": os.cpu_count()})  # after every size: a killed run keeps them
    plot(results, args.out.with_suffix(".png"))
    failed = [s["name"] for r in results for s in r["steps"] if not s["ok"]]
    if failed:
        say(f"stages that failed or did not run: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
