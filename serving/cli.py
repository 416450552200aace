"""``recsys serving``: run the online service.

``serve --workers N`` runs N uvicorn worker processes sharing one port (the kernel spreads the
connections): one process is GIL-bound to about one core, so on this 2-core machine two workers
serve about twice what one does (see ``benchmarks/overload.py``). Each worker loads the releases,
bounds its own in-flight requests (admission control is per worker) and appends its own stream
files. With more than one worker, ``/metrics`` is the sum over all of them (prometheus_client's
multiprocess mode over a scratch directory removed at exit); ``/dashboard`` shows the worker that
answered.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

import typer

app = typer.Typer(name="serving", help="The online recommendation service (FastAPI + uvicorn).", no_args_is_help=True)

# One per core of this 2-core machine. At 3x capacity (python -m benchmarks.overload --workers N, 20 s,
# admission 4): 1 worker admitted 134 req/s (p99 53 ms), 2 workers 187 req/s (p99 53 ms), 3 workers
# 206 req/s but p99 140 ms (more GIL-bound processes than cores).
DEFAULT_WORKERS = 2
DOMAINS_ENV = "RECSYS_SERVING_DOMAINS"  # the parent's --domains, for the workers (comma-separated)
LOG_LEVEL_ENV = "RECSYS_SERVING_LOG_LEVEL"


@app.callback()
def main() -> None:
    """The online recommendation service (FastAPI + uvicorn)."""


def worker_app():  # -> FastAPI (typed loosely: importing FastAPI here would slow the CLI's --help)
    """The application of one uvicorn worker (``uvicorn --factory serving.cli:worker_app``)."""
    from serving.app import create_app
    from serving.settings import load_settings

    level = os.environ.get(LOG_LEVEL_ENV, "info").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s")
    domains = [d for d in os.environ.get(DOMAINS_ENV, "").split(",") if d]
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
    workers: int = typer.Option(DEFAULT_WORKERS, min=1, help="uvicorn worker processes sharing the port "
                                "(about one core each; /metrics sums them)"),
    log_level: str = typer.Option("info", help="uvicorn/application log level"),
) -> None:
    """Serve recommendations and event intake. The API key for /v1/events comes from RECSYS_API_KEY, the
    optional key of /v1/recommendations from RECSYS_READ_API_KEY; releases are read from
    RECSYS_ARTIFACTS_DIR and features from the Feast store of RECSYS_DATA_DIR."""
    import uvicorn

    from serving.settings import load_settings

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings(domains=domains or None)  # checked here, so a bad flag fails before any worker
    typer.echo(f"serving {', '.join(settings.domains)} on http://{host}:{port} with {workers} worker(s) "
               "(loading releases...)")
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
        uvicorn.run("serving.cli:worker_app", factory=True, host=host, port=port, workers=workers,
                    log_level=log_level, access_log=False)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
