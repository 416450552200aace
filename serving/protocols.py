"""What serving needs from the components it calls, as structural types.

The real implementations: ``common.online_features.OnlineFeatures`` (a :class:`FeatureReader`),
``models.retrieval.export.Retrievers`` (:class:`RetrieverSet`) and ``models.ranking.scoring.Scorer``
(:class:`RankScorer`). Tests substitute their own only to inject faults (a store that is down, a
ranker that raises or is slow).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from common.online_features import ItemFeatures, UserFeatures


class FeatureReader(Protocol):
    def user_features(self, user_id: str) -> UserFeatures:
        """Every user-keyed served feature of one user (defaults where missing; ``found`` per view)."""
        ...

    def item_features(self, item_ids: Sequence[str]) -> ItemFeatures:
        """Every item-keyed served feature of up to 500 items, column-wise."""
        ...


Retrieved = tuple[Sequence[str], np.ndarray]  # item ids (best first) and their scores


class RetrieverSet(Protocol):
    """``models.retrieval.export.Retrievers``: each call returns ``(item_ids, scores)``, best first."""

    @property
    def description(self) -> Mapping[str, Any]:
        """The bundle's ``retrieval.json`` (``training.segment_column`` names the popularity segment)."""
        ...

    def collaborative(
        self, user_id: str, user_features: Mapping[str, Any], history: Sequence[str], k: int
    ) -> Retrieved: ...

    def content(self, history: Sequence[str], profile: Mapping[str, float], k: int) -> Retrieved:
        """Content neighbours of the history and of ``profile`` (taxonomy prefix -> affinity)."""
        ...

    def content_embedding(self, history: Sequence[str], profile: Mapping[str, float] | None) -> np.ndarray | None:
        """The content query of ``content`` (None when neither history nor profile says anything)."""
        ...

    def content_search(self, query: np.ndarray | None, k: int, exclude: Sequence[str]) -> Retrieved:
        """The content index's top-``k`` for a query of ``content_embedding``, without ``exclude``."""
        ...

    def popular(self, segment: str | None, k: int) -> Retrieved: ...


class RankerConfig(Protocol):
    @property
    def numeric(self) -> list[str]: ...

    @property
    def categorical(self) -> list[str]: ...


class RankScorer(Protocol):
    @property
    def config(self) -> RankerConfig: ...

    def score(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """One score per candidate (higher first) for a batch of feature arrays."""
        ...
