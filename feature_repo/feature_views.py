"""Build a Feast ``FeatureView`` from a ``common.features`` spec (schema, ttl, entity, sources)."""

from __future__ import annotations

from datetime import timedelta

from feast import FeatureView, Field
from feast.types import String

from common.features import BATCH_VIEWS, FeatureViewSpec
from common.paths import DataPaths
from feature_repo.data_sources import batch_source, push_source
from feature_repo.entities import BY_JOIN_KEY
from feature_repo.feast_types import fields


def feature_view(spec: FeatureViewSpec, paths: DataPaths) -> FeatureView:
    """The view of ``spec``: batch-fed from Spark's Parquet, and push-fed too when ``spec.streaming``."""
    batch = batch_source(spec, paths)
    entity = BY_JOIN_KEY[spec.entity]
    return FeatureView(
        name=spec.name,
        entities=[entity],
        ttl=timedelta(days=spec.ttl_days),
        schema=[Field(name=spec.entity, dtype=String, description=entity.description), *fields(spec.fields)],
        source=push_source(spec, batch) if spec.streaming else batch,
        online=True,
        description=spec.description,
        tags={"entity": spec.entity, "streaming": str(spec.streaming).lower()},
    )


def views_keyed_by(join_key: str, paths: DataPaths) -> list[FeatureView]:
    """All batch views whose entity has ``join_key``, in ``BATCH_VIEWS`` order."""
    return [feature_view(spec, paths) for spec in BATCH_VIEWS if spec.entity == join_key]
