"""Offline sources (Spark's Parquet output), push sources (the Beam job) and the request source.

Each batch view reads ``paths.feature_source(view)``: a directory of Parquet part files with the
entity key, ``event_timestamp``, ``created`` and the view's fields. A streaming view is also fed by a
push source ``<view>_push`` whose batch source is that same directory.
"""

from __future__ import annotations

from feast import FileSource, PushSource, RequestSource

from common.features import CREATED, EVENT_TIMESTAMP, REQUEST_INPUTS, FeatureViewSpec
from common.online_features import push_source_name
from common.paths import DataPaths
from feature_repo.feast_types import fields

request_inputs = RequestSource(
    name="request_inputs",
    schema=fields(REQUEST_INPUTS),
    description="Context sent with each recommendation request (time and device), input of request_context.",
)


def batch_source(spec: FeatureViewSpec, paths: DataPaths) -> FileSource:
    """The Parquet directory Spark writes for ``spec``."""
    return FileSource(
        name=f"{spec.name}_source",
        path=str(paths.feature_source(spec.name)),
        timestamp_field=EVENT_TIMESTAMP,
        created_timestamp_column=CREATED,
        description=f"Spark output for {spec.name}: one row per {spec.entity} per snapshot.",
    )


def push_source(spec: FeatureViewSpec, batch: FileSource) -> PushSource:
    """The push source the streaming job writes ``spec`` rows to (online), backed by ``batch``."""
    return PushSource(
        name=push_source_name(spec),
        batch_source=batch,
        description=f"Real-time updates of {spec.name} pushed by the Beam streaming job.",
    )
