"""Request and response bodies of the HTTP API (pydantic v2; they make the OpenAPI spec)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator


class Context(BaseModel):
    """The screen the slate is for. Unknown keys are accepted and ignored (bounded by the body size)."""

    model_config = ConfigDict(extra="allow")

    device: str | None = Field(None, max_length=64, examples=["ios"])
    session_id: str | None = Field(None, max_length=256)
    page: str | None = Field(None, max_length=128, examples=["home"])
    timestamp: datetime | None = Field(
        None, examples=["2024-03-14T09:30:00Z"],
        description="ISO-8601 request time (no offset: UTC); used only when the server trusts context "
                    "timestamps (simulated time, serving.trust_context_timestamp), ignored otherwise")

    @field_validator("device", "session_id", "page")
    @classmethod
    def _blank_is_absent(cls, value: str | None) -> str | None:
        """Surrounding blanks are dropped and a blank value means "not given" (as in the event contract)."""
        return (value.strip() or None) if value is not None else None

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        """Aware, in UTC (a timestamp without an offset is taken as UTC)."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class RecommendationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=256, examples=["r_u000001"])
    domain: str = Field(min_length=1, max_length=64, examples=["retail"])
    k: int = Field(10, ge=1, le=100, description="slate size")
    context: Context = Context()
    exclude: list[str] = Field(default_factory=list, description="item ids the client does not want")


def recommendation_request_model(
    domains: Sequence[str], id_prefixes: Sequence[str], max_k: int, max_exclude: int
) -> type[RecommendationRequest]:
    """The request body as this server accepts it: served domains, id prefixes and limits in the
    schema itself, so the OpenAPI spec (and schemathesis) knows them."""
    prefixes = "|".join(re.escape(p) for p in id_prefixes)
    return create_model(
        "RecommendationRequest",
        __base__=RecommendationRequest,
        user_id=(str, Field(min_length=1, max_length=256, pattern=f"^({prefixes})", examples=["r_u000001"],
                            description="must carry the prefix of the requested domain")),
        domain=(Literal[tuple(domains)], Field(examples=[domains[0]])),
        k=(int, Field(10, ge=1, le=max_k, description="slate size")),
        exclude=(list[str], Field(default_factory=list, max_length=max_exclude,
                                  description="item ids the client does not want")),
    )


class SlateEntry(BaseModel):
    item_id: str
    score: float | None = Field(description="ranker (or retrieval-fusion) score; null for back-fill items")
    retrievers: dict[str, float] = Field(description="retrievers that proposed the item, with their scores")
    reasons: list[str] = Field(description="why the item is here: boosts, diversity, exploration, back-fill")
    propensity: float = Field(gt=0, le=1, description="probability the policy shows this item in this slot")


class RecommendationResponse(BaseModel):
    request_id: str
    items: list[SlateEntry]
    release: str
    arm: str = Field(description="the experiment arm that served the request (logged on its impressions)")
    path: str = Field(description="full | cold_start | retrieval_order | popularity_fallback | legacy_segment | "
                                  "lake_popularity (no release is loaded: popularity of the domain's lake data)")
    degraded: bool = Field(False, description="a degraded answer: the ranker was skipped (retrieval_order), the "
                                             "online store was unreachable (popularity_fallback; on any path: "
                                             "default user features) or no release is loaded (lake_popularity)")


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[Any] = Field(description="raw event objects; each is validated on its own")


class EventRejection(BaseModel):
    index: int
    code: str
    field: str | None
    detail: str


class EventBatchResult(BaseModel):
    accepted: int
    rejected: int
    reasons: dict[str, int]
    rejections: list[EventRejection]


class ErrorBody(BaseModel):
    error: str
    details: list[dict[str, str]] = []
    request_id: str | None = None


class RefusedRelease(BaseModel):
    version: str | None = Field(description="the version CURRENT names; null when CURRENT itself is unreadable")
    reason: str
    retrying: bool = Field(description="a transient failure, tried again with backoff; false: not until CURRENT "
                                       "changes")


class Health(BaseModel):
    status: str
    releases: dict[str, str] = {}
    missing: list[str] = Field([], description="domains that can answer nothing: no release and no lake data")
    degraded: list[str] = Field([], description="domains answered from their lake data (no release is loaded) or "
                                              "by an older release than CURRENT names (see refused)")
    refused: dict[str, RefusedRelease] = Field(
        {}, description="domains whose CURRENT release is refused (or CURRENT unreadable); ``releases`` names the "
                        "last-known-good release serving instead. Left out of the body when empty")
    store: str = Field("ok", description="the online store: ok, or 'open circuit' (reads failed repeatedly and now "
                                        "fail fast: answers are degraded, from default or cached features). Left "
                                        "out of the body while ok")

    def body(self) -> dict[str, Any]:
        """The response body: as it was before ``refused`` and ``store`` existed while nothing is refused
        and the store is ok."""
        left_out = ({"refused"} if not self.refused else set()) | ({"store"} if self.store == "ok" else set())
        return self.model_dump(exclude=left_out or None)
