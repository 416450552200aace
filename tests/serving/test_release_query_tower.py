"""Serving's releases and the fast query tower: it serves from the fast tower, refuses a release whose
fast tower disagrees with its SavedModel, and still loads releases written before the fast tower existed."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from common.online_features import OnlineFeatures
from common.paths import DataPaths
from common.registry import ArtifactRegistry
from models.retrieval.export import BUNDLE_FILE, FAST_QUERY_DIR, SavedModelQueryTower
from models.retrieval.fast_query import WEIGHTS_FILE, FastQueryTower
from serving.release_loader import ReleaseLoader, ReleaseRefused


@pytest.fixture(scope="module")
def store(world) -> OnlineFeatures:
    from feature_repo.store import get_store

    return OnlineFeatures(get_store(world.store_paths))


def _loader(registry: ArtifactRegistry, store: OnlineFeatures, tmp_path: Path) -> ReleaseLoader:
    return ReleaseLoader(registry, DataPaths(tmp_path / "data"), store, item_cache_ttl=3600)


def _drift(staging: Path) -> None:
    """A fast tower that no longer matches its SavedModel (an export bug), checksummed with the release."""
    path = staging / "retrieval" / FAST_QUERY_DIR / WEIGHTS_FILE
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["mlp.1.w"] = arrays["mlp.1.w"] * np.float32(1.05)  # the trunk's last layer
    np.savez(path, **arrays)


def _without_fast_tower(staging: Path) -> None:
    """The layout of releases built before the fast tower existed."""
    shutil.rmtree(staging / "retrieval" / FAST_QUERY_DIR)
    description = json.loads((staging / "retrieval" / BUNDLE_FILE).read_text())
    del description["query_tower_fast"]
    (staging / "retrieval" / BUNDLE_FILE).write_text(json.dumps(description))


def test_release_serves_the_fast_query_tower(publish: Callable[..., str], store: OnlineFeatures, tmp_path: Path) -> None:
    registry = ArtifactRegistry(tmp_path / "artifacts")
    publish(registry, "v1")
    release = _loader(registry, store, tmp_path).load("retail", "v1")
    assert isinstance(release.retrievers.query_tower, FastQueryTower)
    assert release.retrievers.query_parity["max_abs_diff"] <= 1e-5


def test_release_whose_fast_tower_disagrees_is_refused(publish: Callable[..., str], store: OnlineFeatures,
                                                       tmp_path: Path) -> None:
    registry = ArtifactRegistry(tmp_path / "artifacts")
    publish(registry, "v2", mutate=_drift)
    assert registry.verify("retail", "v2").ok  # the files are what the manifest says: only parity catches it
    with pytest.raises(ReleaseRefused, match="disagrees with the SavedModel"):
        _loader(registry, store, tmp_path).load("retail", "v2")


def test_release_without_the_fast_tower_loads_with_the_saved_model(publish: Callable[..., str], store: OnlineFeatures,
                                                                   tmp_path: Path) -> None:
    registry = ArtifactRegistry(tmp_path / "artifacts")
    publish(registry, "v0", mutate=_without_fast_tower)
    release = _loader(registry, store, tmp_path).load("retail", "v0")
    assert isinstance(release.retrievers.query_tower, SavedModelQueryTower)
    ids, _ = release.retrievers.collaborative("r_u01", {"country": "DE"}, ["r_i01"], 5)
    assert len(ids) == 5
