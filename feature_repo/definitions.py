"""Every Feast object of the repository, built for one data root."""

from __future__ import annotations

from dataclasses import dataclass

from feast import Entity, FeatureService, FeatureView, OnDemandFeatureView
from feast.feast_object import FeastObject

from common.paths import DataPaths
from feature_repo.entities import item, user
from feature_repo.feature_services import feature_services
from feature_repo.item_features import item_feature_views
from feature_repo.request_features import request_context
from feature_repo.user_features import user_feature_views


@dataclass(frozen=True)
class Definitions:
    entities: tuple[Entity, ...]
    feature_views: tuple[FeatureView, ...]
    on_demand_views: tuple[OnDemandFeatureView, ...]
    services: tuple[FeatureService, ...]

    def objects(self) -> list[FeastObject]:
        """What ``FeatureStore.apply`` takes (data sources come along with their views)."""
        return [*self.entities, *self.feature_views, *self.on_demand_views, *self.services]


def build_definitions(paths: DataPaths) -> Definitions:
    """Entities, batch/streaming views over ``paths``' offline sources, ``request_context`` and services."""
    views = (*user_feature_views(paths), *item_feature_views(paths))
    by_name: dict[str, FeatureView | OnDemandFeatureView] = {v.name: v for v in views}
    by_name[request_context.name] = request_context
    return Definitions(
        entities=(user, item),
        feature_views=views,
        on_demand_views=(request_context,),
        services=tuple(feature_services(by_name)),
    )
