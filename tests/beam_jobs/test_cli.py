"""The ``stream`` CLI: help, option checks, the Pub/Sub graph wiring, ``status``, and ``run --once``."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from typer.testing import CliRunner

from beam_jobs.cli import app
from beam_jobs.feast_io import FeastTarget
from beam_jobs.unbounded import SourceSpec, UnboundedSettings, build_unbounded, read_source, refreshed_catalog

runner = CliRunner()


def test_help_lists_the_runner_and_source_options() -> None:
    result = runner.invoke(app, ["run", "--help"])
    assert result.exit_code == 0
    for option in ("--runner", "--source", "--data-dir", "--poll-interval", "--once", "--topic", "--bootstrap"):
        assert option in result.output


def test_files_source_needs_the_direct_runner_and_once_needs_files(data_paths) -> None:
    result = runner.invoke(app, ["run", "--runner", "FlinkRunner", "--data-dir", str(data_paths.root)])
    assert result.exit_code != 0 and "files source runs on DirectRunner" in result.output
    result = runner.invoke(app, ["run", "--source", "kafka", "--once", "--data-dir", str(data_paths.root)])
    assert result.exit_code != 0 and "--once applies to the files source only" in result.output


def test_message_sources_check_their_settings(data_paths) -> None:
    with pytest.raises(ValueError, match="exactly one of --topic or --subscription"):
        read_source(beam.Pipeline(), SourceSpec("pubsub"))
    with pytest.raises(ValueError, match="needs --bootstrap and --topic"):
        read_source(beam.Pipeline(), SourceSpec("kafka", topic="events"))


def test_pubsub_graph_translates_for_a_remote_runner(data_paths) -> None:
    options = PipelineOptions(["--runner=FlinkRunner"])
    options.view_as(StandardOptions).streaming = True
    p = beam.Pipeline(options=options)
    settings = UnboundedSettings(str(data_paths.root), FeastTarget(str(data_paths.root)))
    build_unbounded(read_source(p, SourceSpec("pubsub", topic="projects/recsys-prod/topics/events")),
                    refreshed_catalog(p, settings), settings)
    urns = {t.spec.urn for t in p.to_runner_api().components.transforms.values()}
    assert {"beam:transform:pubsub_read:v1", "beam:transform:window_into:v1"} <= urns


def test_run_once_then_status(feast_paths, events, write_lines) -> None:
    write_lines(feast_paths.incoming("retail") / "a.jsonl", [events.line(events.record(1)), b"{bad"])
    assert runner.invoke(app, ["status", "--data-dir", str(feast_paths.root)]).exit_code == 1
    result = runner.invoke(app, ["run", "--once", "--no-seed-users", "--data-dir", str(feast_paths.root)])
    assert result.exit_code == 0, result.output
    assert "processed 1 events in 1 batches, 1 dead letters" in result.output
    status = runner.invoke(app, ["status", "--data-dir", str(feast_paths.root)])
    assert status.exit_code == 0
    assert "committed batches: 1" in status.output
    size = (feast_paths.incoming("retail") / "a.jsonl").stat().st_size
    assert f"retail/a.jsonl: {size:,} / {size:,} bytes done" in status.output


def test_run_without_registered_features_says_what_to_do(data_paths) -> None:
    result = runner.invoke(app, ["run", "--once", "--data-dir", str(data_paths.root)])
    assert result.exit_code != 0 and "recsys features apply" in str(result.exception)
