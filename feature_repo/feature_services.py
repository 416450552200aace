"""Versioned feature services, exactly as ``common.features.FEATURE_SERVICES`` lists them."""

from __future__ import annotations

from collections.abc import Mapping

from feast import FeatureService, FeatureView, OnDemandFeatureView

from common.features import FEATURE_SERVICES

_PURPOSE = {
    "retrieval": "the query tower of the two-tower retriever (user-side features)",
    "ranking": "the DCN ranker (user, history, item, real-time and request features)",
}


def feature_services(views: Mapping[str, FeatureView | OnDemandFeatureView]) -> list[FeatureService]:
    """One ``FeatureService`` per entry of ``FEATURE_SERVICES``; ``views`` maps view name -> built view."""
    services = []
    for name, specs in FEATURE_SERVICES.items():
        model, _, version = name.rpartition("_")
        services.append(
            FeatureService(
                name=name,
                features=[views[spec.name] for spec in specs],
                description=f"Features consumed by {_PURPOSE[model]}, version {version}.",
                tags={"model": model, "version": version},
            )
        )
    return services
