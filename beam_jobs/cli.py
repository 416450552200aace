"""``recsys stream ...``: the streaming job (live events -> online features, lake, dead letters)."""

from __future__ import annotations

import logging
import signal
import threading
from enum import StrEnum
from pathlib import Path

import typer

app = typer.Typer(
    name="stream",
    help="Beam streaming job: validate live events, keep real-time features fresh in Feast, land the raw lake.",
    no_args_is_help=True,
    add_completion=False,
)


class Runner(StrEnum):
    DirectRunner = "DirectRunner"
    FlinkRunner = "FlinkRunner"
    DataflowRunner = "DataflowRunner"


class Source(StrEnum):
    files = "files"
    pubsub = "pubsub"
    kafka = "kafka"


class Online(StrEnum):
    sqlite = "sqlite"
    redis = "redis"


def _paths(data_dir: Path | None):
    from common.paths import DataPaths

    return DataPaths(data_dir.resolve()) if data_dir else DataPaths.default()


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("apache_beam", "feast", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


DATA_DIR = typer.Option(None, "--data-dir", help="Data root (default: $RECSYS_DATA_DIR, else ./data).")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(
    ctx: typer.Context,
    runner: Runner = typer.Option(Runner.DirectRunner, "--runner", help="Beam runner. The files source runs on "
                                  "DirectRunner; Flink/Dataflow take --source pubsub|kafka (extra --flag=value "
                                  "arguments are passed to Beam, e.g. --flink_master=host:8081)."),
    source: Source = typer.Option(Source.files, "--source", help="files: tail incoming/<domain>/*.jsonl "
                                  "(local, micro-batches); pubsub / kafka: message queues (unbounded job)."),
    data_dir: Path | None = DATA_DIR,
    poll_interval: float = typer.Option(1.0, "--poll-interval", min=0.05, help="Seconds between looks at "
                                        "incoming/ when idle (files source)."),
    once: bool = typer.Option(False, "--once", help="Process what is in incoming/ now, then stop (files source)."),
    topic: str | None = typer.Option(None, "--topic", help="Pub/Sub topic path, or the Kafka topic."),
    subscription: str | None = typer.Option(None, "--subscription", help="Pub/Sub subscription path."),
    bootstrap: str | None = typer.Option(None, "--bootstrap", help="Kafka bootstrap servers (host:port,...)."),
    expansion_service: str | None = typer.Option(None, "--expansion-service", help="Kafka: address of a running "
                                                 "Beam Java expansion service (else Beam fetches its jar)."),
    online: Online = typer.Option(Online.sqlite, "--online", help="Feast online store to push to."),
    redis_url: str | None = typer.Option(None, "--redis-url", help="Redis host:port for --online redis."),
    metrics_port: int | None = typer.Option(None, "--metrics-port", help="Serve Prometheus metrics on "
                                            "127.0.0.1:PORT (files source; a text file is always written)."),
    max_batch_mb: float = typer.Option(4.0, "--max-batch-mb", min=0.01, help="Largest micro-batch, in MiB."),
    flush_seconds: float = typer.Option(1.0, "--flush-seconds", min=0.1, help="Unbounded job: per-entity push "
                                        "batching and early hourly panes, in seconds."),
    seed_users: bool = typer.Option(True, "--seed-users/--no-seed-users", help="Start a user's state from the "
                                    "row already online (batch-initialised by Spark)."),
    future_tolerance: float = typer.Option(300.0, "--future-tolerance-seconds", min=0.0, help="An event's own "
                                           "time is believed up to its arrival plus this; later ones are "
                                           "windowed at that bound (client clocks running ahead), counted."),
    incoming_retention_hours: float = typer.Option(24.0, "--incoming-retention-hours", min=0.0, help="Files "
                                                   "source: remove incoming files read to their end and unchanged "
                                                   "this long (their events are in the lake); 0 keeps them all."),
) -> None:
    """Run the streaming job until stopped (Ctrl-C / SIGTERM finish the current batch first)."""

    _configure_logging()
    paths = _paths(data_dir)
    if source is Source.files:
        if runner is not Runner.DirectRunner:
            raise typer.BadParameter("the files source runs on DirectRunner; use --source pubsub|kafka on "
                                     f"{runner.value}", param_hint="--runner")
        from beam_jobs.job import FileStreamJob, StreamConfig

        config = StreamConfig(
            paths, poll_interval=poll_interval, once=once, max_batch_bytes=int(max_batch_mb * (1 << 20)),
            online=online.value, redis_url=redis_url, metrics_port=metrics_port, seed_users=seed_users,
            future_tolerance_seconds=future_tolerance, incoming_retention_hours=incoming_retention_hours or None,
        )
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        summary = FileStreamJob(config).run(stop)
        fresh = summary["freshness_seconds"]["all"]
        typer.echo(
            f"processed {summary['events']:,} events in {summary['batches']} batches, "
            f"{sum(summary['dead_letters'].values()):,} dead letters, freshness p50 "
            f"{fresh.get('p50', 0.0):.2f} s p99 {fresh.get('p99', 0.0):.2f} s"
        )
        return
    if once:
        raise typer.BadParameter("--once applies to the files source only", param_hint="--once")
    from beam_jobs.feast_io import FeastTarget
    from beam_jobs.unbounded import SourceSpec, UnboundedSettings, run_unbounded

    spec = SourceSpec(source.value, topic, subscription, bootstrap, expansion_service)
    settings = UnboundedSettings(
        str(paths.root), FeastTarget(str(paths.root), online.value, redis_url), flush_seconds=flush_seconds,
        seed_users=seed_users, future_tolerance_seconds=future_tolerance,
    )
    beam_runner = "BundleBasedDirectRunner" if runner is Runner.DirectRunner else runner.value
    run_unbounded(spec, settings, [f"--runner={beam_runner}", *ctx.args])


@app.command()
def status(data_dir: Path | None = DATA_DIR) -> None:
    """Committed batches, backlog per incoming file and the last metrics summary of the files job."""
    import orjson

    from beam_jobs.checkpoint import CheckpointStore
    from beam_jobs.job import checkpoint_path, state_dir
    from beam_jobs.tail import incoming_files

    paths = _paths(data_dir)
    if not checkpoint_path(paths).exists():
        typer.echo(f"no streaming checkpoint under {state_dir(paths)} (the job has not run)")
        raise typer.Exit(1)
    store = CheckpointStore(checkpoint_path(paths))
    offsets, pending = store.offsets(), store.pending()
    typer.echo(f"committed batches: {store.committed_batches()}"
               + (f", batch {pending.id} pending (re-run at next start)" if pending else ""))
    store.close()
    for name, path in incoming_files(paths.incoming()):
        done = offsets.get(name, (0, 0))[1]
        typer.echo(f"  {name}: {done:,} / {path.stat().st_size:,} bytes done")
    summary = state_dir(paths) / "summary.json"
    if summary.exists():
        typer.echo(orjson.dumps(orjson.loads(summary.read_bytes()), option=orjson.OPT_INDENT_2).decode())
