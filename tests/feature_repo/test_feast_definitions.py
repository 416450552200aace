"""The Feast definitions are generated from common.features and stay in step with the CLI's YAML."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from feast import FileSource, PushSource
from feast.repo_config import load_repo_config
from feast.types import Array, Float32, Int64, String

from common.features import BATCH_VIEWS, FEATURE_SERVICES, REQUEST_CONTEXT, REQUEST_INPUTS
from common.paths import REPO_ROOT, DataPaths
from feature_repo.config import REPO_DIR, repo_config
from feature_repo.definitions import build_definitions
from feature_repo.feast_types import feast_type

PATHS = DataPaths(Path("/srv/recsys-data"))


@pytest.fixture(scope="module")
def definitions():
    return build_definitions(PATHS)


def test_dtype_strings_map_to_feast_types():
    assert feast_type("Int64") == Int64
    assert feast_type("Array(String)") == Array(String)
    assert feast_type("Array(Float32)") == Array(Float32)
    with pytest.raises(KeyError):
        feast_type("Decimal")


def test_views_are_generated_from_the_feature_module(definitions):
    views = {v.name: v for v in definitions.feature_views}
    assert list(views) == [spec.name for spec in BATCH_VIEWS]
    for spec in BATCH_VIEWS:
        view = views[spec.name]
        assert [(f.name, f.dtype) for f in view.features] == [
            (f.name, feast_type(f.dtype)) for f in spec.fields
        ]
        assert [f.description for f in view.features] == [f.description for f in spec.fields]
        assert view.ttl == timedelta(days=spec.ttl_days)
        assert view.entity_columns[0].name == spec.entity
        assert view.batch_source.path == str(PATHS.feature_source(spec.name))
        assert (view.batch_source.timestamp_field, view.batch_source.created_timestamp_column) == (
            "event_timestamp",
            "created",
        )


def test_streaming_views_have_push_sources_backed_by_their_parquet():
    views = {v.name: v for v in build_definitions(PATHS).feature_views}
    pushed = {name: v.stream_source for name, v in views.items() if isinstance(v.stream_source, PushSource)}
    assert {name: s.name for name, s in pushed.items()} == {
        "user_activity": "user_activity_push",
        "item_stats": "item_stats_push",
    }
    for name, source in pushed.items():
        assert isinstance(source.batch_source, FileSource)
        assert source.batch_source.path == str(PATHS.feature_source(name))


def test_request_context_view_takes_the_request_inputs(definitions):
    (odfv,) = definitions.on_demand_views
    assert odfv.name == REQUEST_CONTEXT.name
    assert [(f.name, f.dtype) for f in odfv.features] == [
        (f.name, feast_type(f.dtype)) for f in REQUEST_CONTEXT.fields
    ]
    (request_source,) = odfv.source_request_sources.values()
    assert [(f.name, f.dtype) for f in request_source.schema] == [
        (f.name, feast_type(f.dtype)) for f in REQUEST_INPUTS
    ]


def test_feature_services_hold_exactly_the_listed_views(definitions):
    services = {s.name: s for s in definitions.services}
    assert set(services) == set(FEATURE_SERVICES) == {"retrieval_v1", "ranking_v1"}
    for name, specs in FEATURE_SERVICES.items():
        projections = services[name].feature_view_projections
        assert [p.name for p in projections] == [spec.name for spec in specs]
        assert [[f.name for f in p.features] for p in projections] == [spec.names for spec in specs]


def test_every_object_has_a_description(definitions):
    objects = definitions.objects()
    sources = [v.batch_source for v in definitions.feature_views] + [
        v.stream_source for v in definitions.feature_views if v.stream_source
    ]
    sources += [s for odfv in definitions.on_demand_views for s in odfv.source_request_sources.values()]
    assert len(objects) == 2 + len(BATCH_VIEWS) + 1 + len(FEATURE_SERVICES)
    for obj in [*objects, *sources]:
        assert obj.description.strip(), f"{type(obj).__name__} {obj.name} has no description"


@pytest.mark.parametrize(
    ("yaml_name", "online"), [("feature_store.yaml", "sqlite"), ("feature_store.redis.yaml", "redis")]
)
def test_cli_yaml_matches_the_python_config_for_the_default_data_root(yaml_name: str, online: str):
    from_yaml = load_repo_config(REPO_DIR, REPO_DIR / yaml_name)
    from_python = repo_config(DataPaths(REPO_ROOT / "data"), online, redis_url="127.0.0.1:6379")
    assert (REPO_DIR / from_yaml.registry.path).resolve() == Path(from_python.registry.path)
    assert from_yaml.registry.cache_ttl_seconds == from_python.registry.cache_ttl_seconds
    assert from_yaml.online_store.type == from_python.online_store.type
    if online == "sqlite":
        assert (REPO_DIR / from_yaml.online_store.path).resolve() == Path(from_python.online_store.path)
    else:
        assert from_yaml.online_store.connection_string == from_python.online_store.connection_string
    assert from_yaml.project == from_python.project
    assert from_yaml.offline_store.type == from_python.offline_store.type == "file"
    assert from_yaml.entity_key_serialization_version == from_python.entity_key_serialization_version == 3


def test_feastignore_leaves_only_repo_py_for_the_feast_cli():
    ignored = {
        line for line in (REPO_DIR / ".feastignore").read_text().splitlines() if line and line[0] != "#"
    }
    modules = {p.name for p in REPO_DIR.glob("*.py")}
    assert modules - ignored == {"repo.py"}
