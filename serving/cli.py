"""``recsys serving``: run the online service.

``serve --workers N`` runs N uvicorn worker processes: one process is GIL-bound to about one core, so
on this 2-core machine two workers serve about twice what one does (see ``benchmarks/overload.py``).
With ``--front nginx`` (the default when nginx is installed; ``make setup`` installs it) each worker
listens on a unix socket of its own behind nginx, which refuses the excess in a few milliseconds
(:mod:`serving.front`); with ``--front none`` the workers share the port directly (the kernel spreads
the connections) and only their own admission control refuses. Each worker loads the releases,
bounds its own in-flight requests and appends its own stream files. With more than one worker,
``/metrics`` is the sum over all of them (prometheus_client's multiprocess mode over a scratch
directory removed at exit); ``/dashboard`` shows the worker that answered.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import threading
from enum import StrEnum
from pathlib import Path

import typer

from common.settings import variable

app = typer.Typer(name="serving", help="The online recommendation service (FastAPI + uvicorn).", no_args_is_help=True)

# One per core of this 2-core machine. At 3x capacity (python -m benchmarks.overload --workers N, 20 s,
# admission 4): 1 worker admitted 134 req/s (p99 53 ms), 2 workers 187 req/s (p99 53 ms), 3 workers
# 206 req/s but p99 140 ms (more GIL-bound processes than cores).
DEFAULT_WORKERS = 2
DOMAINS_ENV = variable("serving_domains")  # the parent's --domains, for the workers (comma-separated)
LOG_LEVEL_ENV = variable("serving_log_level")


class Front(StrEnum):
    auto = "auto"  # nginx when it is installed, else none
    nginx = "nginx"
    none = "none"


@app.callback()
def main() -> None:
    """The online recommendation service (FastAPI + uvicorn)."""


def worker_app():  # -> FastAPI (typed loosely: importing FastAPI here would slow the CLI's --help)
    """The application of one uvicorn worker (``uvicorn --factory serving.cli:worker_app``)."""
    from common.settings import env
    from serving.app import create_app
    from serving.settings import load_settings

    level = env().serving_log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s")
    domains = [d for d in (env().serving_domains or "").split(",") if d]
    return create_app(load_settings(domains=domains or None))


def _share_metrics(directory: str) -> None:
    """Every worker (spawned after this) stores its metric values in ``directory``; ``/metrics`` sums them."""
    from serving.metrics import WORKERS_DIR_ENV

    for name in ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR", WORKERS_DIR_ENV):
        os.environ[name] = directory


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="interface to bind"),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port"),
    domains: list[str] = typer.Option(
        None, "--domains", "-d", help="domain to serve (repeatable; default: every writable domain)"
    ),
    workers: int = typer.Option(DEFAULT_WORKERS, min=1, help="uvicorn worker processes (about one core each; "
                                "/metrics sums them)"),
    front: Front = typer.Option(Front.auto, help="nginx: refuse the excess in nginx before Python sees it "
                                "(serving/front.py); none: the workers share the port; auto: nginx if installed"),
    log_level: str = typer.Option("info", help="uvicorn/application log level"),
) -> None:
    """Serve recommendations and event intake. The API key for /v1/events comes from RECSYS_API_KEY, the
    optional key of /v1/recommendations from RECSYS_READ_API_KEY; releases are read from
    RECSYS_ARTIFACTS_DIR and features from the Feast store of RECSYS_DATA_DIR."""
    from serving.front import find_nginx
    from serving.settings import load_settings

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings(domains=domains or None)  # checked here, so a bad flag fails before any worker
    nginx = find_nginx() if front is not Front.none else None
    if front is Front.nginx and nginx is None:
        raise typer.BadParameter("nginx is not installed (make setup installs it); use --front none", param_hint="--front")
    typer.echo(f"serving {', '.join(settings.domains)} on http://{host}:{port} with {workers} worker(s) "
               f"{'behind nginx' if nginx else 'sharing the port'} (loading releases...)")
    if front is Front.auto and nginx is None:
        typer.echo("note: nginx is not installed; the workers refuse the excess themselves (slower 503s)", err=True)
    if settings.api_key is None:
        typer.echo("warning: RECSYS_API_KEY is not set; POST /v1/events will answer 503", err=True)
    if settings.read_api_key is None:
        typer.echo("note: RECSYS_READ_API_KEY is not set; POST /v1/recommendations needs no key", err=True)
    os.environ[DOMAINS_ENV] = ",".join(settings.domains)
    os.environ[LOG_LEVEL_ENV] = log_level
    metrics_dir = tempfile.mkdtemp(prefix="recsys-serving-metrics-") if workers > 1 else None
    if metrics_dir is not None:
        _share_metrics(metrics_dir)
    try:
        if nginx is None:
            import uvicorn

            uvicorn.run("serving.cli:worker_app", factory=True, host=host, port=port, workers=workers,
                        log_level=log_level, access_log=False)
        else:
            _serve_behind_nginx(nginx, settings, host, port, workers, log_level)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _serve_behind_nginx(nginx: str, settings, host: str, port: int, workers: int, log_level: str) -> None:
    """Run the workers and nginx under a supervisor until SIGINT/SIGTERM (exit 0) or until a child
    keeps dying (exit 1)."""
    from common.supervisor import ChildFailed, Supervisor
    from serving.front import FrontPlan, front_children

    run_dir = Path(tempfile.mkdtemp(prefix="recsys-serving-front-"))
    plan = FrontPlan(run_dir, host, port, workers, settings.admission.recommendations, settings.max_body_bytes,
                     settings.admission.retry_after_seconds)
    # the children share this process's group: stopping it as a group (recsys run's supervisor, Ctrl-C)
    # stops them too, so no orphaned nginx keeps the port from a restarted service
    supervisor = Supervisor(front_children(plan, nginx, log_level, os.environ), own_groups=False)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    supervisor.start()
    try:
        supervisor.supervise(threading.Event())
    except KeyboardInterrupt:
        typer.echo("stopping the serving workers and nginx")
    except ChildFailed as failed:
        typer.secho(f"error: {failed}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    finally:
        supervisor.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
