"""New-item slots for the content retriever: recently launched items get a reserved share of its list.

The content index holds every catalog item, so an item with no interactions can be found -- but only
if it out-scores every established item on content similarity, which a new item rarely does against
thousands of neighbours (on the demo retail world the content retriever's top 100 held none of the
relevant items launched in the test period). So a share of the content retriever's ``k`` places is
kept for items launched in a recent window, ranked by the same content score among themselves; the
rest of the list is the usual content top-k. The window is small (tens to hundreds of items), so the
search is an exact dot product over the content vectors of the items in it, sorted by launch time.

Serving asks for items launched in ``[now - days, now]``. The offline evaluation replays a whole test
period with one candidate generation at its start, so it asks for ``[cut - days, end of test]``: an
item launched during the test period counts as launched when its users arrive.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from models.retrieval.export import Retrievers

CONTENT_IDS = Path("content") / "item_ids.npy"  # the retrieval bundle's content rows (models.retrieval.export)
CONTENT_VECTORS = Path("content") / "item_embeddings.npy"
DAY_SECONDS = 86_400.0


class NewItemSlots(BaseModel):
    """How many of the content retriever's places are kept for new items, and what counts as new."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    share: float = Field(0.2, ge=0, le=1)  # of the content retriever's k
    days: float = Field(14, gt=0)  # launched at most this long before the request

    def slots(self, k: int) -> int:
        return round(self.share * k)


@dataclass(frozen=True)
class NewItemIndex:
    """Content vectors of every catalog item with a launch time, rows sorted by launch time."""

    ids: np.ndarray  # object (str)
    launched_s: np.ndarray  # float64 epoch seconds, ascending
    vectors: np.ndarray  # float32 [n, d], the content index's unit vectors

    @classmethod
    def build(cls, item_ids: Sequence[str], vectors: np.ndarray, catalog_ids: Sequence[str],
              launched_s: np.ndarray) -> NewItemIndex:
        """Join the content rows (``item_ids``/``vectors``) to the catalog's launch times (epoch seconds);
        items missing from the catalog or without a launch time (NaN) are left out."""
        launch = pd.Series(np.asarray(launched_s, dtype="float64"), index=np.asarray(catalog_ids).astype(str))
        launch = launch[~launch.index.duplicated(keep="last")]
        ids = np.asarray(item_ids).astype(str)
        seconds = launch.reindex(ids).to_numpy(dtype="float64")
        known = ~np.isnan(seconds)
        order = np.argsort(seconds[known], kind="stable")
        return cls(ids.astype(object)[known][order], seconds[known][order],
                   np.asarray(vectors, dtype="float32")[known][order])

    @classmethod
    def from_bundle(cls, bundle_dir: Path, catalog_ids: Sequence[str], launched_s: np.ndarray) -> NewItemIndex:
        """From a retrieval bundle's content vectors and the launch times of the catalog that is served."""
        bundle_dir = Path(bundle_dir)
        return cls.build(np.load(bundle_dir / CONTENT_IDS), np.load(bundle_dir / CONTENT_VECTORS), catalog_ids,
                         launched_s)

    def __len__(self) -> int:
        return len(self.ids)

    def launched_between(self, since_s: float, until_s: float) -> slice:
        """The rows launched in ``[since_s, until_s]``."""
        lo = int(np.searchsorted(self.launched_s, since_s, side="left"))
        return slice(lo, int(np.searchsorted(self.launched_s, until_s, side="right")))

    def search(self, query: np.ndarray | None, since_s: float, until_s: float, k: int,
               exclude: Collection[str] = ()) -> tuple[list[str], np.ndarray]:
        """Top-``k`` by content score among the items launched in ``[since_s, until_s]``, best first."""
        rows = self.launched_between(since_s, until_s)
        if query is None or k <= 0 or rows.start >= rows.stop:
            return [], np.zeros(0, dtype="float32")
        scores = self.vectors[rows] @ np.asarray(query, dtype="float32").ravel()
        ids = self.ids[rows]
        wanted = min(len(scores), k + len(exclude))
        top = np.argpartition(-scores, wanted - 1)[:wanted] if wanted < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        keep = [r for r in top if ids[r] not in exclude][:k]
        return [str(ids[r]) for r in keep], scores[keep].astype("float32")


def content_with_new_items(retrievers: Retrievers, index: NewItemIndex, config: NewItemSlots, history: Sequence[str],
                           profile: Mapping[str, float] | None, k: int, now_s: float) -> tuple[list[str], np.ndarray]:
    """The serving path's content retriever: its top-``k`` with the new-item slots filled from the items
    launched in the last ``config.days`` before ``now_s`` (history items left out, like the content list)."""
    query = retrievers.content_embedding(history, profile)
    ids, scores = retrievers.content_search(query, k, history)
    slots = config.slots(k)
    if not slots or query is None:
        return ids, scores
    new_ids, new_scores = index.search(query, now_s - config.days * DAY_SECONDS, now_s, slots, set(history))
    return with_new_items(ids, scores, new_ids, new_scores, k, slots)


def with_new_items(ids: Sequence[str], scores: np.ndarray, new_ids: Sequence[str], new_scores: np.ndarray,
                   k: int, slots: int) -> tuple[list[str], np.ndarray]:
    """The content list with up to ``slots`` of its ``k`` places given to ``new_ids`` (best new items
    first); the other places keep the content top-k. Merged by score, no duplicates."""
    reserved = dict(zip(list(new_ids)[:slots], np.asarray(new_scores, dtype="float32")[:slots], strict=True))
    kept = [(item, float(s)) for item, s in zip(ids, scores, strict=True) if item not in reserved]
    merged = kept[: k - len(reserved)] + list(reserved.items())
    merged.sort(key=lambda pair: -pair[1])
    return [item for item, _ in merged], np.asarray([s for _, s in merged], dtype="float32")
