"""Item feature views (attributes and popularity, real-time stats), generated from ``common.features``."""

from __future__ import annotations

from feast import FeatureView

from common.features import ITEM_ID
from common.paths import DataPaths
from feature_repo.feature_views import views_keyed_by


def item_feature_views(paths: DataPaths) -> list[FeatureView]:
    """Every batch view keyed by ``item_id`` (``item_stats`` is also fed by ``item_stats_push``)."""
    return views_keyed_by(ITEM_ID, paths)
