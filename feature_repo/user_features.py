"""User feature views (profile, history, real-time activity), generated from ``common.features``."""

from __future__ import annotations

from feast import FeatureView

from common.features import USER_ID
from common.paths import DataPaths
from feature_repo.feature_views import views_keyed_by


def user_feature_views(paths: DataPaths) -> list[FeatureView]:
    """Every batch view keyed by ``user_id`` (``user_activity`` is also fed by ``user_activity_push``)."""
    return views_keyed_by(USER_ID, paths)
