"""The on-demand view ``request_context``: features of the request itself, computed at read time.

The computation lives in ``common.online_features.request_context_columns`` so that serving can
compute the very same values without a Feast round trip. Feast stores this UDF's source text and
re-executes it in a bare namespace, hence the import inside the function body.
"""

from __future__ import annotations

from typing import Any

from feast.on_demand_feature_view import on_demand_feature_view

from common.features import REQUEST_CONTEXT
from feature_repo.data_sources import request_inputs
from feature_repo.feast_types import fields


@on_demand_feature_view(
    name=REQUEST_CONTEXT.name,
    sources=[request_inputs],
    # Feast 0.67 checks the declared schema against the inferred one with Field.__eq__, which compares
    # descriptions too: the fields go without descriptions (the view itself carries one).
    schema=fields(REQUEST_CONTEXT.fields, describe=False),
    mode="python",
    description=REQUEST_CONTEXT.description,
)
def request_context(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    from common.online_features import request_context_columns

    return request_context_columns(inputs["request_ts"], inputs["device"])
